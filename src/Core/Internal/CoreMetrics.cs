using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace Perf.Core.Internal;

/// <summary>
/// Instruments of the core (meter <c>Perf.Core</c>, BCL only; the host exports them at <c>/metrics</c>).
/// Tag arrays are built once per enum value, so per-uplink calls do not allocate.
/// </summary>
internal static class CoreMetrics
{
    public const string MeterName = "Perf.Core";

    private static readonly Meter Meter = new(MeterName);

    // Per transport; observed (not an UpDownCounter) so the exporter sees a fresh value at every scrape.
    private static readonly ConcurrentDictionary<string, StrongBox<long>> SessionCounts = new(StringComparer.Ordinal);

    private static readonly ObservableUpDownCounter<long> Sessions = Meter.CreateObservableUpDownCounter(
        "sessions", ObserveSessions, description: "Live device sessions in the session tables of this process, by transport");

    private static readonly Histogram<double> CommitDuration = Meter.CreateHistogram<double>(
        "commit.duration", unit: "ms", description: "Duration of one group commit of the uplink log (fsync included when enabled)");

    private static readonly Counter<long> CommittedRecords = Meter.CreateCounter<long>(
        "commit.records", description: "Records made durable by group commits");

    private static readonly KeyValuePair<string, object?>[][] TelemetryTags = StatusTags("telemetry");
    private static readonly KeyValuePair<string, object?>[][] AttributeTags = StatusTags("attributes");

    // Slots: the telemetry statuses, then the attribute statuses (one observed counter, per-uplink cost an interlocked add).
    private static readonly ObservedCounter Uplinks = new(
        Meter, "uplinks", [.. TelemetryTags, .. AttributeTags], description: "Telemetry and attribute uplinks by kind and outcome (ok or the rejection reason)");



    private static readonly Counter<long> PersistentRpcTransitions = Meter.CreateCounter<long>(
        "rpc.persistent", description: "Persistent RPC state transitions by new status");

    private static readonly KeyValuePair<string, object?>[][] RpcTags = EnumTags<RpcStatus>("status");

    private static readonly ObservedCounter RpcOutcomes = new(
        Meter, "rpc", RpcTags, description: "Lightweight server-side RPC outcomes by status");
    private static readonly KeyValuePair<string, object?>[][] PersistentTags = EnumTags<PersistentRpcStatus>("status");

    public static void SessionOpened(string transport) =>
        Interlocked.Increment(ref SessionCounts.GetOrAdd(transport, static _ => new StrongBox<long>()).Value);

    public static void SessionClosed(string transport) =>
        Interlocked.Decrement(ref SessionCounts.GetOrAdd(transport, static _ => new StrongBox<long>()).Value);

    private static IEnumerable<Measurement<long>> ObserveSessions()
    {
        foreach (var (transport, count) in SessionCounts)
        {
            yield return new Measurement<long>(Volatile.Read(ref count.Value), new KeyValuePair<string, object?>("transport", transport.ToLowerInvariant()));
        }
    }

    public static void Committed(TimeSpan duration, int records)
    {
        CommitDuration.Record(duration.TotalMilliseconds);
        CommittedRecords.Add(records);
    }

    public static UplinkResult Telemetry(UplinkResult result)
    {
        Uplinks.Add(StatusSlot(result.Status), 1);
        return result;
    }

    public static UplinkResult Attributes(UplinkResult result)
    {
        Uplinks.Add(TelemetryTags.Length + StatusSlot(result.Status), 1);
        return result;
    }

    public static RpcOutcome Rpc(RpcOutcome outcome)
    {
        RpcOutcomes.Add((int)outcome.Status, 1);
        return outcome;
    }

    /// <summary>Lightweight RPC outcomes of <paramref name="status"/> counted so far, process-wide (tests).</summary>
    internal static long RpcOutcomeCount(RpcStatus status) => RpcOutcomes.Total((int)status);

    public static void PersistentRpc(PersistentRpcStatus status) => PersistentRpcTransitions.Add(1, Pick(PersistentTags, (int)status));

    private static int StatusSlot(UplinkStatus status) =>
        (uint)status < (uint)TelemetryTags.Length ? (int)status : TelemetryTags.Length - 1;

    private static KeyValuePair<string, object?>[] Pick(KeyValuePair<string, object?>[][] tags, int index) =>
        (uint)index < (uint)tags.Length ? tags[index] : tags[^1];

    private static KeyValuePair<string, object?>[][] StatusTags(string kind) =>
        Enum.GetValues<UplinkStatus>().Select(s => new KeyValuePair<string, object?>[] { new("kind", kind), new("status", Snake(s.ToString())) }).ToArray();

    private static KeyValuePair<string, object?>[][] EnumTags<T>(string name)
        where T : struct, Enum
    {
        var values = Enum.GetValues<T>();
        var max = values.Max(v => Convert.ToInt32(v, System.Globalization.CultureInfo.InvariantCulture));
        var tags = new KeyValuePair<string, object?>[max + 1][];
        for (var i = 0; i < tags.Length; i++)
        {
            var label = Enum.IsDefined(typeof(T), Enum.ToObject(typeof(T), i)) ? Snake(Enum.ToObject(typeof(T), i).ToString()!) : "other";
            tags[i] = [new(name, label)];
        }

        return tags;
    }

    private static string Snake(string name) =>
        string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));
}
