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

    private static readonly ObservedCounter FramesIn = new(
        Meter, "messages.in", description: "Frames received by TCP integrations");

    private static readonly ObservedCounter BytesIn = new(
        Meter, "bytes.in", unit: "By", description: "Bytes of frames received by TCP integrations");

    private static readonly ObservedCounter FramesOut = new(
        Meter, "messages.out", description: "Downlink frames written by TCP integrations");

    private static readonly ObservedCounter BytesOut = new(
        Meter, "bytes.out", unit: "By", description: "Bytes of downlink frames written by TCP integrations");

    private static readonly Counter<long> ConverterErrors = Meter.CreateCounter<long>(
        "converter.errors", description: "Converter and framing errors recorded in integration event logs");

    public static void ConnectionOpened() => Interlocked.Increment(ref _open);

    public static void ConnectionClosed() => Interlocked.Decrement(ref _open);

    public static void FrameReceived(long bytes)
    {
        FramesIn.Add(1);
        BytesIn.Add(bytes);
    }

    public static void FrameSent(long bytes)
    {
        FramesOut.Add(1);
        BytesOut.Add(bytes);
    }

    public static void ConverterError() => ConverterErrors.Add(1);
}
