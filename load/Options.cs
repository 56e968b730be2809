using System.Globalization;

namespace Perf.Load;

/// <summary>A bad command line: reported with the usage and exit code 2.</summary>
public sealed class OptionsException(string message) : Exception(message);

/// <summary>
/// <c>--name value</c> and <c>--flag</c> options after the scenario name. Scenarios read what they use;
/// <see cref="ThrowIfUnused"/> then rejects anything left over (a typo must not silently run a default load).
/// </summary>
public sealed class Options
{
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public Options(IEnumerable<string> args)
    {
        string? pending = null;
        foreach (var arg in args)
        {
            if (arg.StartsWith("--", StringComparison.Ordinal) && arg.Length > 2)
            {
                if (pending is not null)
                {
                    Add(pending, null);
                }

                var eq = arg.IndexOf('=', StringComparison.Ordinal);
                if (eq > 0)
                {
                    Add(arg[2..eq], arg[(eq + 1)..]);
                    pending = null;
                }
                else
                {
                    pending = arg[2..];
                }
            }
            else if (pending is not null)
            {
                Add(pending, arg);
                pending = null;
            }
            else
            {
                throw new OptionsException($"Unexpected argument '{arg}'.");
            }
        }

        if (pending is not null)
        {
            Add(pending, null);
        }
    }

    public bool Has(string name)
    {
        _used.Add(name);
        return _values.ContainsKey(name);
    }

    public bool Flag(string name)
    {
        if (!Has(name))
        {
            return false;
        }

        return _values[name] switch
        {
            null or "true" or "1" or "yes" => true,
            "false" or "0" or "no" => false,
            var other => throw new OptionsException($"--{name}: expected no value or true/false, got '{other}'."),
        };
    }

    public string String(string name, string defaultValue) => StringOrNull(name) ?? defaultValue;

    public string? StringOrNull(string name)
    {
        if (!Has(name))
        {
            return null;
        }

        return _values[name] ?? throw new OptionsException($"--{name} needs a value.");
    }

    public int Int(string name, int defaultValue, int min = int.MinValue, int max = int.MaxValue)
    {
        var text = StringOrNull(name);
        if (text is null)
        {
            return defaultValue;
        }

        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
        {
            throw new OptionsException($"--{name}: expected an integer in [{min}, {max}], got '{text}'.");
        }

        return value;
    }

    public double Double(string name, double defaultValue, double min = double.MinValue)
    {
        var value = DoubleOrNull(name, min);
        return value ?? defaultValue;
    }

    public double? DoubleOrNull(string name, double min = double.MinValue)
    {
        var text = StringOrNull(name);
        if (text is null)
        {
            return null;
        }

        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value < min || double.IsNaN(value))
        {
            throw new OptionsException($"--{name}: expected a number >= {min}, got '{text}'.");
        }

        return value;
    }

    /// <summary>A duration: <c>10</c> or <c>10s</c>, <c>500ms</c>, <c>2m</c>.</summary>
    public TimeSpan Duration(string name, TimeSpan defaultValue)
    {
        var text = StringOrNull(name);
        return text is null ? defaultValue : ParseDuration(name, text);
    }

    public static TimeSpan ParseDuration(string name, string text)
    {
        var (number, scale) = text switch
        {
            _ when text.EndsWith("ms", StringComparison.Ordinal) => (text[..^2], 0.001),
            _ when text.EndsWith('s') => (text[..^1], 1.0),
            _ when text.EndsWith('m') => (text[..^1], 60.0),
            _ => (text, 1.0),
        };
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value < 0 || double.IsNaN(value))
        {
            throw new OptionsException($"--{name}: expected a duration like 10s, 500ms or 2m, got '{text}'.");
        }

        return TimeSpan.FromSeconds(value * scale);
    }

    public void ThrowIfUnused()
    {
        var unused = _values.Keys.Where(k => !_used.Contains(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (unused.Count > 0)
        {
            throw new OptionsException($"Unknown option(s) for this scenario: {string.Join(", ", unused.Select(u => "--" + u))}.");
        }
    }

    private void Add(string name, string? value)
    {
        if (!_values.TryAdd(name, value))
        {
            throw new OptionsException($"--{name} given twice.");
        }
    }
}
