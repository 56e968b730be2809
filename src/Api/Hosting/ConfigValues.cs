using System.Globalization;

namespace Perf.Api.Hosting;

/// <summary>
/// Reads one setting (appsettings.json, environment variable or command line) as a typed value. An absent or empty
/// setting takes the fallback; a value that does not parse stops the start with the setting's name, its value and
/// what it should be. A typo never falls back silently: <c>MQTT_ENABLED=0</c> once left the door on.
/// </summary>
internal static class ConfigValues
{
    /// <summary>
    /// <c>true</c>/<c>false</c>, and the forms the reference platform's Spring configuration also takes:
    /// <c>1</c>/<c>0</c>, <c>yes</c>/<c>no</c>, <c>on</c>/<c>off</c> (any case).
    /// </summary>
    public static bool Bool(IConfiguration configuration, string name, bool fallback)
    {
        if (configuration[name] is not { } raw || string.IsNullOrWhiteSpace(raw))
        {
            return fallback;
        }

        var value = raw.Trim();
        if (bool.TryParse(value, out var parsed))
        {
            return parsed;
        }

        foreach (var (text, meaning) in BoolForms)
        {
            if (value.Equals(text, StringComparison.OrdinalIgnoreCase))
            {
                return meaning;
            }
        }

        throw new InvalidOperationException($"{name} '{raw}' is not true or false");
    }

    public static int Int(IConfiguration configuration, string name, int fallback) =>
        configuration[name] is not { } value || string.IsNullOrWhiteSpace(value) ? fallback
        : int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed) ? parsed
        : throw new InvalidOperationException($"{name} '{value}' is not an integer");

    public static long Long(IConfiguration configuration, string name, long fallback) =>
        configuration[name] is not { } value || string.IsNullOrWhiteSpace(value) ? fallback
        : long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed) ? parsed
        : throw new InvalidOperationException($"{name} '{value}' is not an integer");

    /// <summary>A number of at least zero, fractions allowed (seconds, for instance).</summary>
    public static double NonNegativeDouble(IConfiguration configuration, string name, double fallback) =>
        configuration[name] is not { } value || string.IsNullOrWhiteSpace(value) ? fallback
        : double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed) && parsed >= 0 ? parsed
        : throw new InvalidOperationException($"{name} '{value}' is not a non-negative number");

    /// <summary>A whole number from 0 to <see cref="int.MaxValue"/>.</summary>
    public static long NonNegative(IConfiguration configuration, string name, long fallback) =>
        configuration[name] is not { } value || string.IsNullOrWhiteSpace(value) ? fallback
        : long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number <= int.MaxValue ? number
        : throw new InvalidOperationException($"{name} '{value}' is not a whole number from 0 to {int.MaxValue}");

    /// <summary>A TCP or UDP port, 0 to 65535 (0 binds a free port).</summary>
    public static int Port(IConfiguration configuration, string name, int fallback) =>
        configuration[name] is not { } value || string.IsNullOrWhiteSpace(value) ? fallback
        : int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var port) && port is >= 0 and <= 65535 ? port
        : throw new InvalidOperationException($"{name} '{value}' is not a port number (0-65535)");

    private static readonly (string Text, bool Meaning)[] BoolForms =
        [("1", true), ("0", false), ("yes", true), ("no", false), ("on", true), ("off", false)];
}
