using System.Buffers;
using BenchmarkDotNet.Attributes;
using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Bench;

/// <summary>
/// The MQTT codec in memory (no sockets): parse from a <see cref="ReadOnlySequence{T}"/> and write into
/// an <see cref="ArrayBufferWriter{T}"/>. Expected allocation: 0 B per operation for everything except
/// <see cref="Parse_Connect"/>, which builds the once-per-connection <c>MqttConnect</c> (client id,
/// user name) by design. Multi-segment input is covered by the codec's unit tests.
/// </summary>
[BenchmarkCategory("Mqtt", "Codec")]
public class MqttCodecBenchmarks
{
    private const int MaxPacketSize = 65_536 + 1024;
    private static readonly MqttSubscription[] Subscriptions =
    [
        new("v1/devices/me/attributes", 1),
        new("v1/devices/me/rpc/request/+", 1),
        new("v1/devices/me/attributes/response/+", 1),
    ];

    private readonly ArrayBufferWriter<byte> _output = new(4096);
    private readonly byte[] _payload64 = Payload(64);
    private readonly byte[] _payload1K = Payload(1024);
    private ReadOnlySequence<byte> _connect;
    private ReadOnlySequence<byte> _publishQoS0Small;
    private ReadOnlySequence<byte> _publishQoS0Large;
    private ReadOnlySequence<byte> _publishQoS1Small;
    private ReadOnlySequence<byte> _publishQoS1Large;
    private ReadOnlySequence<byte> _pubAck;
    private ReadOnlySequence<byte> _subscribe;

    [GlobalSetup]
    public void Setup()
    {
        _connect = Frame(w => MqttPacketWriter.WriteConnect(w, "sensor-0001", "A1_TEST_TOKEN_0123456789", keepAliveSeconds: 60));
        _publishQoS0Small = Frame(w => MqttPacketWriter.WritePublish(w, "v1/devices/me/telemetry"u8, _payload64));
        _publishQoS0Large = Frame(w => MqttPacketWriter.WritePublish(w, "v1/devices/me/telemetry"u8, _payload1K));
        _publishQoS1Small = Frame(w => MqttPacketWriter.WritePublish(w, "v1/devices/me/telemetry"u8, _payload64, qos: 1, packetId: 42));
        _publishQoS1Large = Frame(w => MqttPacketWriter.WritePublish(w, "v1/devices/me/telemetry"u8, _payload1K, qos: 1, packetId: 42));
        _pubAck = Frame(w => MqttPacketWriter.WritePubAck(w, 42));
        _subscribe = Frame(w => MqttPacketWriter.WriteSubscribe(w, 7, Subscriptions));
    }

    [Benchmark]
    public int Parse_Connect() => Parse(_connect).Connect!.KeepAliveSeconds;

    [Benchmark]
    public long Parse_PublishQoS0_64B() => Parse(_publishQoS0Small).Payload.Length;

    [Benchmark]
    public long Parse_PublishQoS0_1KB() => Parse(_publishQoS0Large).Payload.Length;

    [Benchmark]
    public int Parse_PublishQoS1_64B() => Parse(_publishQoS1Small).PacketId;

    [Benchmark]
    public int Parse_PublishQoS1_1KB() => Parse(_publishQoS1Large).PacketId;

    [Benchmark]
    public int Parse_PubAck() => Parse(_pubAck).PacketId;

    /// <summary>Parses SUBSCRIBE and walks its filters, as the handler does.</summary>
    [Benchmark]
    public int Parse_Subscribe()
    {
        var packet = Parse(_subscribe);
        var filters = new MqttTopicFilterReader(packet);
        int qos = 0;
        while (filters.TryNext(out _, out byte requested))
        {
            qos += requested;
        }

        return qos;
    }

    [Benchmark]
    public int Write_Connect()
    {
        _output.ResetWrittenCount();
        MqttPacketWriter.WriteConnect(_output, "sensor-0001", "A1_TEST_TOKEN_0123456789", keepAliveSeconds: 60);
        return _output.WrittenCount;
    }

    [Benchmark]
    public int Write_PublishQoS0_64B() => WritePublish(_payload64, 0);

    [Benchmark]
    public int Write_PublishQoS0_1KB() => WritePublish(_payload1K, 0);

    [Benchmark]
    public int Write_PublishQoS1_64B() => WritePublish(_payload64, 1);

    [Benchmark]
    public int Write_PublishQoS1_1KB() => WritePublish(_payload1K, 1);

    [Benchmark]
    public int Write_PubAck()
    {
        _output.ResetWrittenCount();
        MqttPacketWriter.WritePubAck(_output, 42);
        return _output.WrittenCount;
    }

    [Benchmark]
    public int Write_SubAck()
    {
        _output.ResetWrittenCount();
        MqttPacketWriter.WriteSubAck(_output, 7, [0x01, 0x01, 0x80]);
        return _output.WrittenCount;
    }

    [Benchmark]
    public int Write_Subscribe()
    {
        _output.ResetWrittenCount();
        MqttPacketWriter.WriteSubscribe(_output, 7, Subscriptions);
        return _output.WrittenCount;
    }

    private int WritePublish(byte[] payload, byte qos)
    {
        _output.ResetWrittenCount();
        MqttPacketWriter.WritePublish(_output, "v1/devices/me/attributes"u8, payload, qos, 42);
        return _output.WrittenCount;
    }

    private static MqttPacket Parse(in ReadOnlySequence<byte> frame)
    {
        var reader = new SequenceReader<byte>(frame);
        if (!MqttPacketReader.TryRead(ref reader, MaxPacketSize, out var packet))
        {
            throw new InvalidOperationException("incomplete frame");
        }

        return packet;
    }

    private static ReadOnlySequence<byte> Frame(Action<IBufferWriter<byte>> write)
    {
        var w = new ArrayBufferWriter<byte>();
        write(w);
        return new ReadOnlySequence<byte>(w.WrittenMemory.ToArray());
    }

    private static byte[] Payload(int size)
    {
        var bytes = new byte[size];
        bytes.AsSpan().Fill((byte)'x');
        "{\"temperature\":"u8.CopyTo(bytes);
        return bytes;
    }
}
