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

    private static readonly TrafficCounters Traffic = new(
        Meter,
        messagesIn: "CoAP datagrams received",
        bytesIn: "Bytes of CoAP datagrams received",
        messagesOut: "CoAP datagrams sent (responses, ACKs, notifications, retransmissions)",
        bytesOut: "Bytes of CoAP datagrams sent");

    public static void Received(int bytes) => Traffic.Received(bytes);

    public static void Sent(int bytes) => Traffic.Sent(bytes);
}
