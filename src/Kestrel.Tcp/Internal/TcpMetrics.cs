using System.Diagnostics.Metrics;
using Perf.Core;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// Instruments of the TCP integration door (meter <c>Perf.Tcp</c>; exported at <c>/metrics</c> by the host).
/// </summary>
internal static class TcpMetrics
{
    public const string MeterName = "Perf.Tcp";

    private static readonly Meter Meter = new(MeterName);

    // Observed so the exporter sees a fresh value at every scrape even when it stays flat.
    private static long _open;

    private static readonly ObservableUpDownCounter<long> Open = Meter.CreateObservableUpDownCounter(
        "connections", () => Volatile.Read(ref _open), description: "Open TCP integration connections");

    private static readonly TrafficCounters Traffic = new(
        Meter,
        messagesIn: "Frames received by TCP integrations",
        bytesIn: "Bytes of frames received by TCP integrations",
        messagesOut: "Downlink frames written by TCP integrations",
        bytesOut: "Bytes of downlink frames written by TCP integrations");

    private static readonly Counter<long> ConverterErrors = Meter.CreateCounter<long>(
        "converter.errors", description: "Converter and framing errors recorded in integration event logs");

    public static void ConnectionOpened() => Interlocked.Increment(ref _open);

    public static void ConnectionClosed() => Interlocked.Decrement(ref _open);

    public static void FrameReceived(long bytes) => Traffic.Received(bytes);

    public static void FrameSent(long bytes) => Traffic.Sent(bytes);

    public static void ConverterError() => ConverterErrors.Add(1);
}
