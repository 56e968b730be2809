using System.Diagnostics.Metrics;
using Perf.Core;

namespace Perf.Api.Edge;

/// <summary>
/// Instruments of the edge door (meter <c>Perf.Edge</c>, exported at <c>/metrics</c> with the other
/// <c>Perf.*</c> meters; queue depths per edge are in <c>Perf.Host</c>).
/// </summary>
internal static class EdgeMetrics
{
    public const string MeterName = "Perf.Edge";

    private static readonly Meter Meter = new(MeterName);

    // messages.in slot 0: accepted, 1: refused.
    private static readonly TrafficCounters Traffic = new(
        Meter,
        messagesIn: "Edge UplinkMsg received, by outcome",
        bytesIn: "Serialized size of the UplinkMsg received",
        messagesOut: "DownlinkMsg written to edges (retries included)",
        bytesOut: "Serialized size of the DownlinkMsg written",
        messagesInTags: [[new("outcome", "ok")], [new("outcome", "refused")]]);

    public static void Uplink(int bytes, bool ok) => Traffic.Received(bytes, ok ? 0 : 1);

    public static void Downlink(int bytes) => Traffic.Sent(bytes);
}
