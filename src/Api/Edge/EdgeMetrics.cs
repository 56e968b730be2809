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

    // Slot 0: accepted, 1: refused.
    private static readonly ObservedCounter UplinksIn = new(
        Meter, "messages.in", [[new("outcome", "ok")], [new("outcome", "refused")]], description: "Edge UplinkMsg received, by outcome");

    private static readonly ObservedCounter BytesIn = new(
        Meter, "bytes.in", unit: "By", description: "Serialized size of the UplinkMsg received");

    private static readonly ObservedCounter DownlinksOut = new(
        Meter, "messages.out", description: "DownlinkMsg written to edges (retries included)");

    private static readonly ObservedCounter BytesOut = new(
        Meter, "bytes.out", unit: "By", description: "Serialized size of the DownlinkMsg written");

    public static void Uplink(int bytes, bool ok)
    {
        UplinksIn.Add(ok ? 0 : 1, 1);
        BytesIn.Add(bytes);
    }

    public static void Downlink(int bytes)
    {
        DownlinksOut.Add(1);
        BytesOut.Add(bytes);
    }
}
