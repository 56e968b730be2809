using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Perf.Core;
using Perf.Core.Internal;
using Perf.Core.Telemetry;

namespace Perf.Bench.Core;

/// <summary>
/// The per-message part of the QoS 1 telemetry path that issue 12 made pooled, without the log: rent a
/// <see cref="TelemetryUplink"/>, copy the payload into its reused record buffer (<see cref="RecordKind.TelemetryJson"/>,
/// what the door's thread does), hand the buffer over and back as the round's enqueue does, parse it into the reused
/// entry list (what the round does while the commit is on the disk), complete it and read the result through the
/// <see cref="ValueTask{T}"/> the door awaits (which returns it to the pool). Gated at 0 B: before issue 12 the same
/// steps allocated a List, its array, a closure, a PendingRecord, a TaskCompletionSource, its Task and an async box.
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
    public UplinkStatus RentCopyParseAcknowledge()
    {
        var uplink = _pool.Rent();
        var w = new RecordWriter(RecordKind.TelemetryJson, uplink.RecordBuffer);
        w.WriteGuid(_device);
        w.WriteInt64(1_700_000_000_000);
        w.WriteTail(Payload);
        uplink.NowTs = 1_700_000_000_000;
        uplink.Keys = _keys;
        uplink.Buffer = w.Detach(out uplink.Length);
        var buffer = uplink.Buffer;
        uplink.Buffer = null;
        uplink.ReleaseBuffer(buffer);
        uplink.Prepare();
        var task = uplink.CompleteNow(uplink.Entries.Count == 3 ? UplinkResult.Success : new UplinkResult(UplinkStatus.BadPayload, null));
        return task.IsCompletedSuccessfully ? task.Result.Status : UplinkStatus.Unavailable;
    }
}
