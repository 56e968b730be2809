using System.Diagnostics.Metrics;

namespace Perf.Core.Internal;

/// <summary>Instruments of <see cref="ConnectionGuard"/> (meter <c>Perf.Guard</c>, exported as <c>perf_guard_*</c>). Only refusals are counted, never accepted traffic.</summary>
internal static class GuardMetrics
{
    public const string MeterName = "Perf.Guard";

    private static readonly Meter Meter = new(MeterName);

    private static readonly Counter<long> Refused = Meter.CreateCounter<long>(
        "connections.refused", description: "Connections closed at accept, by door and reason (limit: the door's connection limit; rate: the per-address connection rate)");

    private static readonly Counter<long> AuthFailures = Meter.CreateCounter<long>(
        "auth.failures", description: "Wrong credentials by door");

    private static readonly Counter<long> Blocks = Meter.CreateCounter<long>(
        "auth.blocks", description: "Source addresses blocked for wrong credentials, by the door of the failure that blocked them");

    private static readonly Counter<long> RefusedBlocked = Meter.CreateCounter<long>(
        "auth.refused_blocked", description: "Attempts refused because their source address is blocked, by door");

    private static readonly Counter<long> HostileEvents = Meter.CreateCounter<long>(
        "hostile", description: "Connections or datagrams dropped as hostile or broken, by door and kind");

    public static void ConnectionRefused(string door, string reason) => Refused.Add(1, new("door", door), new("reason", reason));

    public static void AuthFailed(string door) => AuthFailures.Add(1, new KeyValuePair<string, object?>("door", door));

    public static void Blocked(string door) => Blocks.Add(1, new KeyValuePair<string, object?>("door", door));

    public static void AuthRefusedWhileBlocked(string door) => RefusedBlocked.Add(1, new KeyValuePair<string, object?>("door", door));

    public static void Hostile(string door, string kind) => HostileEvents.Add(1, new("door", door), new("kind", kind));
}
