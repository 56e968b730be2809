using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Perf.Core;
using Perf.Core.Internal;
using Perf.Core.Telemetry;

namespace Perf.Bench.Core;

/// <summary>
/// The per-message part of the QoS 1 telemetry path that issue 12 made pooled, without the log: rent a
/// <see cref="TelemetryUplink"/>, parse the payload into its reused entry list, encode the log record into
/// its reused buffer, complete it and read the result through the <see cref="ValueTask{T}"/> the door
/// awaits (which returns it to the pool). Gated at 0 B: before issue 12 the same steps allocated a List,
/// its array, a closure, a PendingRecord, a TaskCompletionSource, its Task and an async box.
/// The durable path end to end (log, commit, apply, history) is <see cref="IngestBenchmarks"/> and
/// <c>--ingest</c>, which prints allocated bytes per message.
/// </summary>
[BenchmarkCategory("Core", "Ingest")]
public class UplinkPoolBenchmarks
{
    private static readonly ReadOnlySequence<byte> Payload = new(Encoding.UTF8.GetBytes("""{"temperature":25,"humidity":60.5,"active":true}"""));
    private readonly TelemetryUplinkPool _pool = new();
    private readonly KeyTable _keys = new();
    private readonly Guid _device = Guid.NewGuid();

    [Benchmark]
    public UplinkStatus RentParseEncodeAcknowledge()
    {
        var uplink = _pool.Rent();
        if (!TelemetryJsonParser.TryParseTelemetry(Payload, 1_700_000_000_000, _keys, uplink.Entries, out _))
        {
            uplink.ReturnUnused();
            return UplinkStatus.BadPayload;
        }

        var w = new RecordWriter(RecordKind.Telemetry, uplink.RecordBuffer);
        TelemetryService.WriteEntries(ref w, _device, TelemetryTarget.Both, uplink.Entries);
        uplink.ReleaseBuffer(w.Detach(out _));
        var task = uplink.CompleteNow(UplinkResult.Success);
        return task.IsCompletedSuccessfully ? task.Result.Status : UplinkStatus.Unavailable;
    }
}
