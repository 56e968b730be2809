using System.Diagnostics.Metrics;
using Perf.Core;

namespace Perf.Coap.Internal;

/// <summary>
/// Instruments of the CoAP door (meter <c>Perf.Coap</c>; the host exports every <c>Perf.*</c> meter at
/// <c>/metrics</c>). Per-datagram calls are an interlocked add (<see cref="ObservedCounter"/>).
/// </summary>
internal static class CoapMetrics
{
    public const string MeterName = "Perf.Coap";

    private static readonly Meter Meter = new(MeterName);

    private static readonly ObservedCounter DatagramsIn = new(
        Meter, "messages.in", description: "CoAP datagrams received");

    private static readonly ObservedCounter BytesIn = new(
        Meter, "bytes.in", unit: "By", description: "Bytes of CoAP datagrams received");

    private static readonly ObservedCounter DatagramsOut = new(
        Meter, "messages.out", description: "CoAP datagrams sent (responses, ACKs, notifications, retransmissions)");

    private static readonly ObservedCounter BytesOut = new(
        Meter, "bytes.out", unit: "By", description: "Bytes of CoAP datagrams sent");

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
