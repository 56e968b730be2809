using System.Buffers;
using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Kestrel.Mqtt.Tests;

public class MqttPacketReaderTests
{
    private const int Max = 1 << 20;

    private static byte[] Write(Action<ArrayBufferWriter<byte>> write)
    {
        var w = new ArrayBufferWriter<byte>();
        write(w);
        return w.WrittenSpan.ToArray();
    }

    /// <summary>One valid frame per packet type.</summary>
    public static TheoryData<string> Frames => new(ValidFrames.Keys);

    private static readonly Dictionary<string, byte[]> ValidFrames = new()
    {
        ["CONNECT"] = Write(w => MqttPacketWriter.WriteConnect(w, "client-1", "token-ABC", "pw"u8, 30, willTopic: "will/t", willMessage: "bye"u8, willQoS: 1)),
        ["CONNECT-3.1"] = Write(w => MqttPacketWriter.WriteConnect(w, "c", "tok", protocolLevel: 3)),
        ["CONNACK"] = Write(w => MqttPacketWriter.WriteConnAck(w, MqttConnectReturnCode.NotAuthorized, true)),
        ["PUBLISH-QoS0"] = Write(w => MqttPacketWriter.WritePublish(w, "v1/devices/me/telemetry"u8, "{\"t\":1}"u8)),
        ["PUBLISH-QoS1"] = Write(w => MqttPacketWriter.WritePublish(w, "v2/t", new byte[300], qos: 1, packetId: 7, dup: true, retain: true)),
        ["PUBACK"] = Write(w => MqttPacketWriter.WritePubAck(w, 1)),
        ["PUBREC"] = Write(w => MqttPacketWriter.WritePubRec(w, 2)),
        ["PUBREL"] = Write(w => MqttPacketWriter.WritePubRel(w, 3)),
        ["PUBCOMP"] = Write(w => MqttPacketWriter.WritePubComp(w, 0xFFFF)),
        ["SUBSCRIBE"] = Write(w => MqttPacketWriter.WriteSubscribe(w, 9, [new("v1/devices/me/rpc/request/+", 1), new("a/#", 0), new("#", 2)])),
        ["SUBACK"] = Write(w => MqttPacketWriter.WriteSubAck(w, 9, [0x01, 0x80, 0x00])),
        ["UNSUBSCRIBE"] = Write(w => MqttPacketWriter.WriteUnsubscribe(w, 10, [new("v1/devices/me/attributes", 0)])),
        ["UNSUBACK"] = Write(w => MqttPacketWriter.WriteUnsubAck(w, 10)),
        ["PINGREQ"] = Write(MqttPacketWriter.WritePingReq),
        ["PINGRESP"] = Write(MqttPacketWriter.WritePingResp),
        ["DISCONNECT"] = Write(MqttPacketWriter.WriteDisconnect),
    };

    private static MqttPacket ReadOne(ReadOnlySequence<byte> seq, out long consumed)
    {
        var reader = new SequenceReader<byte>(seq);
        Assert.True(MqttPacketReader.TryRead(ref reader, Max, out var packet));
        consumed = reader.Consumed;
        return packet;
    }

    private static MqttProtocolError Reject(byte[] frame, int max = Max)
    {
        var ex = Assert.Throws<MqttProtocolException>(() =>
        {
            var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(frame));
            MqttPacketReader.TryRead(ref reader, max, out _);
        });
        return ex.Error;
    }

    [Theory]
    [MemberData(nameof(Frames))]
    public void TryRead_ReturnsFalseAndConsumesNothing_ForEveryPrefix(string name)
    {
        var frame = ValidFrames[name];
        for (int len = 0; len < frame.Length; len++)
        {
            var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(frame, 0, len));
            Assert.False(MqttPacketReader.TryRead(ref reader, Max, out _));
            Assert.Equal(0, reader.Consumed);
        }
    }

    [Theory]
    [MemberData(nameof(Frames))]
    public void TryRead_ParsesIdentically_WhenSplitOneBytePerSegment(string name)
    {
        var frame = ValidFrames[name];
        var whole = ReadOne(new ReadOnlySequence<byte>(frame), out long c1);
        var split = ReadOne(Segments.OneBytePerSegment(frame), out long c2);
        Assert.Equal(frame.Length, c1);
        Assert.Equal(frame.Length, c2);
        Assert.Equal(whole.Type, split.Type);
        Assert.Equal(whole.Flags, split.Flags);
        Assert.Equal(whole.PacketId, split.PacketId);
        Assert.Equal(whole.Topic.ToArray(), split.Topic.ToArray());
        Assert.Equal(whole.Payload.ToArray(), split.Payload.ToArray());
        Assert.Equal(whole.ReturnCode, split.ReturnCode);
        Assert.Equal(whole.Connect?.ClientId, split.Connect?.ClientId);
        Assert.Equal(whole.Connect?.UserName, split.Connect?.UserName);
    }

    [Fact]
    public void TryRead_ReadsBackToBackFrames_AndStopsAtPartialThird()
    {
        var data = ValidFrames["PUBLISH-QoS1"].Concat(ValidFrames["PINGREQ"]).Concat(ValidFrames["PUBACK"].Take(3)).ToArray();
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(data));
        Assert.True(MqttPacketReader.TryRead(ref reader, Max, out var p1));
        Assert.True(MqttPacketReader.TryRead(ref reader, Max, out var p2));
        long consumed = reader.Consumed;
        Assert.False(MqttPacketReader.TryRead(ref reader, Max, out _));
        Assert.Equal(consumed, reader.Consumed);
        Assert.Equal(MqttPacketType.Publish, p1.Type);
        Assert.Equal(MqttPacketType.PingReq, p2.Type);
    }

    [Fact]
    public void RoundTrip_Connect()
    {
        var p = ReadOne(new(ValidFrames["CONNECT"]), out _);
        var c = p.Connect!;
        Assert.Equal(MqttPacketType.Connect, p.Type);
        Assert.Equal("MQTT", c.ProtocolName);
        Assert.Equal(4, c.ProtocolLevel);
        Assert.Equal("client-1", c.ClientId);
        Assert.Equal("token-ABC"u8.ToArray(), c.UserName);
        Assert.Equal("pw"u8.ToArray(), c.Password);
        Assert.Equal(30, c.KeepAliveSeconds);
        Assert.True(c.CleanSession);
        Assert.Equal("will/t", c.WillTopic);
        Assert.Equal("bye"u8.ToArray(), c.WillMessage);
        Assert.Equal(1, c.WillQoS);
        Assert.Equal(3, ReadOne(new(ValidFrames["CONNECT-3.1"]), out _).Connect!.ProtocolLevel);
    }

    [Fact]
    public void RoundTrip_Publish()
    {
        var p = ReadOne(new(ValidFrames["PUBLISH-QoS1"]), out _);
        Assert.Equal(MqttPacketType.Publish, p.Type);
        Assert.Equal(1, p.QoS);
        Assert.True(p.Dup);
        Assert.True(p.Retain);
        Assert.Equal(7, p.PacketId);
        Assert.Equal("v2/t"u8.ToArray(), p.Topic.ToArray());
        Assert.Equal(300, p.Payload.Length);

        var q0 = ReadOne(new(ValidFrames["PUBLISH-QoS0"]), out _);
        Assert.Equal(0, q0.QoS);
        Assert.Equal(0, q0.PacketId);
        Assert.Equal("{\"t\":1}"u8.ToArray(), q0.Payload.ToArray());
    }

    [Fact]
    public void RoundTrip_PublishWithLargePayload_UsesMultiByteRemainingLength()
    {
        var frame = Write(w => MqttPacketWriter.WritePublish(w, "t", new byte[70_000], 1, 5));
        var p = ReadOne(new(frame), out long consumed);
        Assert.Equal(frame.Length, consumed);
        Assert.Equal(70_000, p.Payload.Length);
    }

    [Fact]
    public void RoundTrip_ConnAckSubAckAndIds()
    {
        var connAck = ReadOne(new(ValidFrames["CONNACK"]), out _);
        Assert.Equal((byte)MqttConnectReturnCode.NotAuthorized, connAck.ReturnCode);
        Assert.True(connAck.SessionPresent);

        var subAck = ReadOne(new(ValidFrames["SUBACK"]), out _);
        Assert.Equal(9, subAck.PacketId);
        Assert.Equal(new byte[] { 0x01, 0x80, 0x00 }, subAck.Payload.ToArray());

        Assert.Equal(1, ReadOne(new(ValidFrames["PUBACK"]), out _).PacketId);
        Assert.Equal(2, ReadOne(new(ValidFrames["PUBREC"]), out _).PacketId);
        Assert.Equal(3, ReadOne(new(ValidFrames["PUBREL"]), out _).PacketId);
        Assert.Equal(0xFFFF, ReadOne(new(ValidFrames["PUBCOMP"]), out _).PacketId);
        Assert.Equal(10, ReadOne(new(ValidFrames["UNSUBACK"]), out _).PacketId);
        Assert.Equal(MqttPacketType.PingResp, ReadOne(new(ValidFrames["PINGRESP"]), out _).Type);
        Assert.Equal(MqttPacketType.Disconnect, ReadOne(new(ValidFrames["DISCONNECT"]), out _).Type);
    }

    [Fact]
    public void RoundTrip_SubscribeAndUnsubscribe_EnumerateFilters()
    {
        var p = ReadOne(Segments.OneBytePerSegment(ValidFrames["SUBSCRIBE"]), out _);
        var filters = new List<(string, byte)>();
        var r = new MqttTopicFilterReader(p);
        while (r.TryNext(out var f, out var qos))
        {
            filters.Add((System.Text.Encoding.UTF8.GetString(f.ToArray()), qos));
        }

        Assert.Equal([("v1/devices/me/rpc/request/+", (byte)1), ("a/#", (byte)0), ("#", (byte)2)], filters);

        var u = ReadOne(new(ValidFrames["UNSUBSCRIBE"]), out _);
        var ur = new MqttTopicFilterReader(u);
        Assert.True(ur.TryNext(out var uf, out _));
        Assert.Equal("v1/devices/me/attributes"u8.ToArray(), uf.ToArray());
        Assert.False(ur.TryNext(out _, out _));
    }

    [Fact]
    public void TryRead_RejectsOversizedRemainingLength_BeforeBodyArrives()
    {
        // PUBLISH announcing 100,000 bytes with only the header present.
        byte[] header = [0x30, 0xA0, 0x8D, 0x06];
        Assert.Equal(MqttProtocolError.PacketTooLarge, Reject(header, max: 65_536));
    }

    [Fact]
    public void TryRead_RejectsFiveByteRemainingLength() =>
        Assert.Equal(MqttProtocolError.MalformedRemainingLength, Reject([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]));

    public static TheoryData<string, byte[], int> Malformed => new()
    {
        { "type 0", [0x00, 0x00], (int)MqttProtocolError.ReservedPacketType },
        { "type 15", [0xF0, 0x00], (int)MqttProtocolError.ReservedPacketType },
        { "PINGREQ flags", [0xC1, 0x00], (int)MqttProtocolError.InvalidFixedHeaderFlags },
        { "SUBSCRIBE flags 0", [0x80, 0x05, 0x00, 0x01, 0x00, 0x01, (byte)'a'], (int)MqttProtocolError.InvalidFixedHeaderFlags },
        { "PUBREL flags 0", [0x60, 0x02, 0x00, 0x01], (int)MqttProtocolError.InvalidFixedHeaderFlags },
        { "PINGREQ with body", [0xC0, 0x01, 0x00], (int)MqttProtocolError.InvalidRemainingLength },
        { "PUBACK length 3", [0x40, 0x03, 0x00, 0x01, 0x00], (int)MqttProtocolError.InvalidRemainingLength },
        { "PUBACK id 0", [0x40, 0x02, 0x00, 0x00], (int)MqttProtocolError.ZeroPacketId },
        { "PUBLISH QoS 3", [0x36, 0x05, 0x00, 0x01, (byte)'a', 0x00, 0x01], (int)MqttProtocolError.InvalidQoS },
        { "PUBLISH DUP on QoS 0", [0x38, 0x03, 0x00, 0x01, (byte)'a'], (int)MqttProtocolError.DupOnQoS0 },
        { "PUBLISH QoS1 id 0", [0x32, 0x05, 0x00, 0x01, (byte)'a', 0x00, 0x00], (int)MqttProtocolError.ZeroPacketId },
        { "PUBLISH wildcard +", [0x30, 0x05, 0x00, 0x03, (byte)'a', (byte)'/', (byte)'+'], (int)MqttProtocolError.WildcardInTopicName },
        { "PUBLISH wildcard #", [0x30, 0x03, 0x00, 0x01, (byte)'#'], (int)MqttProtocolError.WildcardInTopicName },
        { "PUBLISH empty topic", [0x30, 0x02, 0x00, 0x00], (int)MqttProtocolError.EmptyTopic },
        { "PUBLISH topic U+0000", [0x30, 0x04, 0x00, 0x02, (byte)'a', 0x00], (int)MqttProtocolError.InvalidUtf8String },
        { "PUBLISH topic ill-formed", [0x30, 0x04, 0x00, 0x02, 0xC3, 0x28], (int)MqttProtocolError.InvalidUtf8String },
        { "PUBLISH topic surrogate", [0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80], (int)MqttProtocolError.InvalidUtf8String },
        { "PUBLISH topic length beyond body", [0x30, 0x03, 0x00, 0x05, (byte)'a'], (int)MqttProtocolError.MalformedPacket },
        { "SUBSCRIBE no filters", [0x82, 0x02, 0x00, 0x01], (int)MqttProtocolError.EmptySubscription },
        { "SUBSCRIBE id 0", [0x82, 0x06, 0x00, 0x00, 0x00, 0x01, (byte)'a', 0x00], (int)MqttProtocolError.ZeroPacketId },
        { "SUBSCRIBE QoS 3", [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, (byte)'a', 0x03], (int)MqttProtocolError.InvalidSubscribeOptions },
        { "SUBSCRIBE reserved bits", [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, (byte)'a', 0x04], (int)MqttProtocolError.InvalidSubscribeOptions },
        { "SUBSCRIBE missing QoS", [0x82, 0x05, 0x00, 0x01, 0x00, 0x01, (byte)'a'], (int)MqttProtocolError.MalformedPacket },
        { "SUBSCRIBE bad filter a+", [0x82, 0x07, 0x00, 0x01, 0x00, 0x02, (byte)'a', (byte)'+', 0x00], (int)MqttProtocolError.InvalidTopicFilter },
        { "SUBSCRIBE bad filter #/a", [0x82, 0x08, 0x00, 0x01, 0x00, 0x03, (byte)'#', (byte)'/', (byte)'a', 0x00], (int)MqttProtocolError.InvalidTopicFilter },
        { "UNSUBSCRIBE no filters", [0xA2, 0x02, 0x00, 0x01], (int)MqttProtocolError.EmptySubscription },
        { "SUBACK bad code", [0x90, 0x03, 0x00, 0x01, 0x03], (int)MqttProtocolError.InvalidSubAckReturnCode },
        { "CONNACK reserved flags", [0x20, 0x02, 0x02, 0x00], (int)MqttProtocolError.InvalidConnAckFlags },
        { "CONNECT level 5", Connect("MQTT"u8, 5, 0x02), (int)MqttProtocolError.UnacceptableProtocolVersion },
        { "CONNECT MQIsdp level 4", Connect("MQIsdp"u8, 4, 0x02), (int)MqttProtocolError.UnacceptableProtocolVersion },
        { "CONNECT bad name", Connect("MQTX"u8, 4, 0x02), (int)MqttProtocolError.UnacceptableProtocolVersion },
        { "CONNECT reserved flag", Connect("MQTT"u8, 4, 0x03), (int)MqttProtocolError.ConnectReservedFlag },
        { "CONNECT will QoS without will", Connect("MQTT"u8, 4, 0x0A), (int)MqttProtocolError.InvalidWillFlags },
        { "CONNECT will retain without will", Connect("MQTT"u8, 4, 0x22), (int)MqttProtocolError.InvalidWillFlags },
        { "CONNECT will QoS 3", Connect("MQTT"u8, 4, 0x1E), (int)MqttProtocolError.InvalidWillFlags },
        { "CONNECT password without user", Connect("MQTT"u8, 4, 0x42), (int)MqttProtocolError.PasswordWithoutUserName },
        { "CONNECT empty id, persistent session", Connect("MQTT"u8, 4, 0x00), (int)MqttProtocolError.IdentifierRejected },
        { "CONNECT trailing bytes", [.. Connect("MQTT"u8, 4, 0x02, extra: 1)], (int)MqttProtocolError.MalformedPacket },
    };

    /// <summary>A CONNECT with an empty client id and the given name, level and flags.</summary>
    private static byte[] Connect(ReadOnlySpan<byte> name, byte level, byte flags, int extra = 0)
    {
        var body = new List<byte> { 0, (byte)name.Length };
        body.AddRange(name.ToArray());
        body.AddRange([level, flags, 0, 60, 0, 0]);
        body.AddRange(new byte[extra]);
        return [0x10, (byte)body.Count, .. body];
    }

    [Theory]
    [MemberData(nameof(Malformed))]
    public void TryRead_RejectsMalformedFrame_WithItsReason(string name, byte[] frame, int expected)
    {
        Assert.NotNull(name);
        Assert.Equal((MqttProtocolError)expected, Reject(frame));
    }
}
