using System.Diagnostics.Metrics;

namespace Perf.Api.Edge;

/// <summary>
/// Instruments of the edge door (meter <c>Perf.Edge</c>, exported at <c>/metrics</c> with the other
/// <c>Perf.*</c> meters; queue depths per edge are in <c>Perf.Host</c>).
/// </summary>
internal static class EdgeMetrics
{
    public const string MeterName = "Perf.Edge";

    private static readonly Meter Meter = new(MeterName);

    private static readonly KeyValuePair<string, object?> Accepted = new("outcome", "ok");
    private static readonly KeyValuePair<string, object?> Refused = new("outcome", "refused");

    private static readonly Counter<long> UplinksIn = Meter.CreateCounter<long>(
        "messages.in", description: "Edge UplinkMsg received, by outcome");

    private static readonly Counter<long> BytesIn = Meter.CreateCounter<long>(
        "bytes.in", unit: "By", description: "Serialized size of the UplinkMsg received");

    private static readonly Counter<long> DownlinksOut = Meter.CreateCounter<long>(
        "messages.out", description: "DownlinkMsg written to edges (retries included)");

    private static readonly Counter<long> BytesOut = Meter.CreateCounter<long>(
        "bytes.out", unit: "By", description: "Serialized size of the DownlinkMsg written");

    public static void Uplink(int bytes, bool ok)
    {
        UplinksIn.Add(1, ok ? Accepted : Refused);
        BytesIn.Add(bytes);
    }

    public static void Downlink(int bytes)
    {
        DownlinksOut.Add(1);
        BytesOut.Add(bytes);
    }
}
