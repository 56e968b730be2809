using System.Diagnostics.Metrics;

namespace Perf.Coap.Internal;

/// <summary>
/// Instruments of the CoAP door (meter <c>Perf.Coap</c>; the host exports every <c>Perf.*</c> meter at
/// <c>/metrics</c>). No tags on the per-datagram calls, so they do not allocate.
/// </summary>
internal static class CoapMetrics
{
    public const string MeterName = "Perf.Coap";

    private static readonly Meter Meter = new(MeterName);

    private static readonly Counter<long> DatagramsIn = Meter.CreateCounter<long>(
        "messages.in", description: "CoAP datagrams received");

    private static readonly Counter<long> BytesIn = Meter.CreateCounter<long>(
        "bytes.in", unit: "By", description: "Bytes of CoAP datagrams received");

    private static readonly Counter<long> DatagramsOut = Meter.CreateCounter<long>(
        "messages.out", description: "CoAP datagrams sent (responses, ACKs, notifications, retransmissions)");

    private static readonly Counter<long> BytesOut = Meter.CreateCounter<long>(
        "bytes.out", unit: "By", description: "Bytes of CoAP datagrams sent");

    public static void Received(int bytes)
    {
        DatagramsIn.Add(1);
        BytesIn.Add(bytes);
    }

    public static void Sent(int bytes)
    {
        DatagramsOut.Add(1);
        BytesOut.Add(bytes);
    }
}
