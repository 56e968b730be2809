using System.Buffers;
using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using Perf.Api.Edge.Protos;
using Perf.Api.Edge.Protos.Transport;

namespace Perf.Bench.Edge;

/// <summary>
/// The edge gRPC door's protobuf messages (src/Api/Edge/Protos, the generated types) without gRPC or
/// sockets: an <see cref="UplinkMsg"/> of 50 <see cref="EntityDataProto"/> (one device's telemetry each,
/// three values at one timestamp), the batch an edge sends. Serializing into an <see cref="IBufferWriter{T}"/>
/// allocates nothing; parsing builds the message graph by design (one object per message, list and
/// string), so its budget is the measured size of that graph.
/// </summary>
[BenchmarkCategory("Edge", "Protobuf")]
public class EdgeProtoBenchmarks
{
    private const int Entities = 50;
    private readonly ArrayBufferWriter<byte> _output = new(16 * 1024);
    private UplinkMsg _uplink = null!;
    private ReadOnlySequence<byte> _encoded;

    [GlobalSetup]
    public void Setup()
    {
        _uplink = new UplinkMsg { UplinkMsgId = 7 };
        for (var i = 0; i < Entities; i++)
        {
            var values = new TsKvListProto { Ts = 1_700_000_000_000 + i };
            values.Kv.Add(new KeyValueProto { Key = "temperature", Type = KeyValueType.DoubleV, DoubleV = 25.7 });
            values.Kv.Add(new KeyValueProto { Key = "humidity", Type = KeyValueType.LongV, LongV = 69 });
            values.Kv.Add(new KeyValueProto { Key = "active", Type = KeyValueType.BooleanV, BoolV = true });
            var telemetry = new PostTelemetryMsg();
            telemetry.TsKvList.Add(values);
            _uplink.EntityData.Add(new EntityDataProto
            {
                EntityIdMSB = 0x1E2F_3A4B_5C6D_7E8F + i,
                EntityIdLSB = -0x0102_0304_0506_0708 - i,
                EntityType = "DEVICE",
                PostTelemetryMsg = telemetry,
            });
        }

        _encoded = new ReadOnlySequence<byte>(_uplink.ToByteArray());
    }

    [Benchmark(Baseline = true)]
    public int Serialize_Uplink50()
    {
        _output.ResetWrittenCount();
        _uplink.WriteTo(_output);
        return _output.WrittenCount;
    }

    [Benchmark]
    public int CalculateSize_Uplink50() => _uplink.CalculateSize();

    [Benchmark]
    public int Parse_Uplink50() => UplinkMsg.Parser.ParseFrom(_encoded).EntityData.Count;
}
