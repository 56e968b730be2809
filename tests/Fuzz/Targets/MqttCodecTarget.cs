using System.Buffers;
using System.Text;
using Perf.Fuzz.Harness;
using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Fuzz.Targets;

/// <summary>
/// MQTT 3.1.1 codec: <see cref="MqttPacketReader"/> over a stream of packets fed as one read, one byte per
/// read and in random cuts, the way <c>MqttConnection</c> reads its pipe. Invariants: only
/// <see cref="MqttProtocolException"/> escapes the reader; every segmentation yields the same packets and
/// the same error; every parsed packet written back with <see cref="MqttPacketWriter"/> parses to itself.
/// </summary>
internal sealed class MqttCodecTarget : FuzzTarget
{
    // Small enough that interesting lengths reach PacketTooLarge; the door's default is larger.
    private const int MaxPacketSize = 16 * 1024;

    public override string Name => "mqtt";

    public override string Description => "MqttPacketReader (stream, random segmentation) + MqttPacketWriter round trip";

    public override IReadOnlyList<byte[]> Dictionary { get; } =
    [
        .. new[]
        {
            "v1/devices/me/telemetry", "v1/devices/me/attributes", "v1/devices/me/attributes/request/1", "v1/devices/me/rpc/request/+",
            "v1/devices/me/rpc/response/1", "v1/gateway/telemetry", "v1/gateway/connect", "v1/gateway/attributes", "#", "+", "/", "/+/#",
            "{\"temperature\":25}", "\u00e9", "\U0001F600",
        }.Select(Encoding.UTF8.GetBytes),
        [0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x04], [0x00, 0x06, (byte)'M', (byte)'Q', (byte)'I', (byte)'s', (byte)'d', (byte)'p', 0x03],
        [0xC0, 0x00], [0xE0, 0x00], [0x40, 0x02, 0x00, 0x01], [0x62, 0x02, 0x00, 0x01], [0x00, 0x00], [0xED, 0xA0, 0x80], [0xC0, 0x80], [0xFF, 0xFF],
    ];

    public override ulong Run(ReadOnlySpan<byte> input)
    {
        var data = input.ToArray();
        string? reference = null;
        var signature = new Signature();
        foreach (var (plan, cuts) in Segmenter.Plans(input))
        {
            var packets = new List<string>();
            MqttProtocolError? error = null;
            long left = StreamFeeder.Feed(data, cuts, (buffer, end) =>
            {
                if (error is not null)
                {
                    return 0; // The connection closes at the first violation.
                }

                var reader = new SequenceReader<byte>(buffer);
                try
                {
                    while (MqttPacketReader.TryRead(ref reader, MaxPacketSize, out var packet))
                    {
                        string described = Describe(packet);
                        packets.Add(described);
                        RoundTrip(packet, described);
                    }
                }
                catch (MqttProtocolException ex)
                {
                    error = ex.Error;
                }

                return reader.Consumed;
            });

            string outcome = $"{string.Join("\n", packets)}\nerror={error?.ToString() ?? "none"} left={(error is null ? left : -1)}";
            if (reference is null)
            {
                reference = outcome;
                foreach (var p in packets)
                {
                    signature.Add(p[..p.IndexOf(' ', StringComparison.Ordinal)]);
                }

                signature.Add((ulong)(error ?? MqttProtocolError.None));
            }
            else if (reference != outcome)
            {
                throw new FuzzInvariantException($"read as '{plan}' the stream parses differently than as one read:\n--- whole\n{reference}\n--- {plan}\n{outcome}");
            }
        }

        return signature.Value;
    }

    private static string Hex(in ReadOnlySequence<byte> bytes) => Convert.ToHexString(bytes.ToArray());

    private static string Hex(byte[]? bytes) => bytes is null ? "null" : Convert.ToHexString(bytes);

    internal static string Describe(in MqttPacket p)
    {
        var text = new StringBuilder();
        text.Append($"{p.Type} flags={p.Flags:X} id={p.PacketId}");
        switch (p.Type)
        {
            case MqttPacketType.Publish:
                text.Append($" topic={Hex(p.Topic)} payload={Hex(p.Payload)}");
                break;
            case MqttPacketType.Subscribe or MqttPacketType.Unsubscribe:
                var filters = new MqttTopicFilterReader(p);
                while (filters.TryNext(out var filter, out byte qos))
                {
                    text.Append($" filter={Hex(filter)}/{qos}");
                }

                break;
            case MqttPacketType.SubAck:
                text.Append($" codes={Hex(p.Payload)}");
                break;
            case MqttPacketType.ConnAck:
                text.Append($" ack={p.ConnAckFlags} code={p.ReturnCode}");
                break;
            case MqttPacketType.Connect:
                var c = p.Connect!;
                text.Append($" {c.ProtocolName}/{c.ProtocolLevel} clean={c.CleanSession} keepAlive={c.KeepAliveSeconds} client={Hex(Encoding.UTF8.GetBytes(c.ClientId))}");
                text.Append($" will={(c.WillTopic is null ? "null" : Hex(Encoding.UTF8.GetBytes(c.WillTopic)))}:{Hex(c.WillMessage)}:{c.WillQoS}:{c.WillRetain}");
                text.Append($" user={Hex(c.UserName)} password={Hex(c.Password)}");
                break;
        }

        return text.ToString();
    }

    /// <summary>Writes the packet back and parses it again; the two must describe the same packet.</summary>
    private static void RoundTrip(in MqttPacket p, string described)
    {
        var output = new ArrayBufferWriter<byte>();
        switch (p.Type)
        {
            case MqttPacketType.Publish:
                MqttPacketWriter.WritePublish(output, p.Topic.ToArray(), p.Payload.ToArray(), (byte)p.QoS, p.PacketId, p.Dup, p.Retain);
                break;
            case MqttPacketType.PubAck:
                MqttPacketWriter.WritePubAck(output, p.PacketId);
                break;
            case MqttPacketType.PubRec:
                MqttPacketWriter.WritePubRec(output, p.PacketId);
                break;
            case MqttPacketType.PubRel:
                MqttPacketWriter.WritePubRel(output, p.PacketId);
                break;
            case MqttPacketType.PubComp:
                MqttPacketWriter.WritePubComp(output, p.PacketId);
                break;
            case MqttPacketType.UnsubAck:
                MqttPacketWriter.WriteUnsubAck(output, p.PacketId);
                break;
            case MqttPacketType.PingReq:
                MqttPacketWriter.WritePingReq(output);
                break;
            case MqttPacketType.PingResp:
                MqttPacketWriter.WritePingResp(output);
                break;
            case MqttPacketType.Disconnect:
                MqttPacketWriter.WriteDisconnect(output);
                break;
            case MqttPacketType.ConnAck:
                MqttPacketWriter.WriteConnAck(output, (MqttConnectReturnCode)p.ReturnCode, p.SessionPresent);
                break;
            case MqttPacketType.SubAck:
                MqttPacketWriter.WriteSubAck(output, p.PacketId, p.Payload.ToArray());
                break;
            case MqttPacketType.Subscribe or MqttPacketType.Unsubscribe:
                var list = new List<MqttSubscription>();
                var filters = new MqttTopicFilterReader(p);
                while (filters.TryNext(out var filter, out byte qos))
                {
                    list.Add(new MqttSubscription(Encoding.UTF8.GetString(filter), qos));
                }

                if (p.Type == MqttPacketType.Subscribe)
                {
                    MqttPacketWriter.WriteSubscribe(output, p.PacketId, list.ToArray());
                }
                else
                {
                    MqttPacketWriter.WriteUnsubscribe(output, p.PacketId, list.ToArray());
                }

                break;
            case MqttPacketType.Connect:
                var c = p.Connect!;
                if (c.Password is { Length: 0 })
                {
                    return; // The writer's API has no way to say "password flag, empty password" (a client never needs it).
                }

                MqttPacketWriter.WriteConnect(output, c.ClientId, c.UserName is null ? null : Encoding.UTF8.GetString(c.UserName), c.Password,
                    c.KeepAliveSeconds, c.CleanSession, c.ProtocolLevel, c.WillTopic, c.WillMessage, c.WillQoS, c.WillRetain);
                break;
            default:
                throw new FuzzInvariantException($"parsed a packet of unknown type {p.Type}");
        }

        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>(output.WrittenMemory));
        bool ok;
        MqttPacket again;
        try
        {
            ok = MqttPacketReader.TryRead(ref reader, int.MaxValue, out again);
        }
        catch (MqttProtocolException ex)
        {
            throw new FuzzInvariantException($"the writer's copy of '{described}' is rejected: {ex.Error}; bytes {Convert.ToHexString(output.WrittenSpan)}");
        }

        FuzzInvariantException.Check(ok && reader.End, $"the writer's copy of '{described}' is not exactly one packet: {Convert.ToHexString(output.WrittenSpan)}");
        FuzzInvariantException.Equal(described, Describe(again), "round trip");
    }

    public override IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        static byte[] Build(Action<ArrayBufferWriter<byte>> write)
        {
            var w = new ArrayBufferWriter<byte>();
            write(w);
            return w.WrittenSpan.ToArray();
        }

        var telemetry = "{\"temperature\":25,\"humidity\":60.5,\"active\":true,\"firmware\":\"1.2\"}"u8.ToArray();
        yield return ("connect-token", Build(w => MqttPacketWriter.WriteConnect(w, "thermostat-1", "A1_TEST_TOKEN")));
        yield return ("connect-basic", Build(w => MqttPacketWriter.WriteConnect(w, "client-a", "user", "secret"u8, keepAliveSeconds: 30)));
        yield return ("connect-will-31", Build(w => MqttPacketWriter.WriteConnect(w, "old", "TOKEN", protocolLevel: 3, willTopic: "v1/devices/me/telemetry",
            willMessage: "{\"online\":false}"u8, willQoS: 1, willRetain: true)));
        yield return ("publish-telemetry-qos0", Build(w => MqttPacketWriter.WritePublish(w, "v1/devices/me/telemetry", telemetry)));
        yield return ("publish-telemetry-qos1", Build(w => MqttPacketWriter.WritePublish(w, "v1/devices/me/telemetry",
            "[{\"ts\":1451649600512,\"values\":{\"key1\":\"value1\"}},{\"ts\":1451649601512,\"values\":{\"key2\":42}}]"u8, qos: 1, packetId: 7)));
        yield return ("publish-attributes", Build(w => MqttPacketWriter.WritePublish(w, "v1/devices/me/attributes",
            "{\"attribute1\":\"value1\",\"attribute2\":true,\"attribute3\":{\"someNumber\":42}}"u8, qos: 1, packetId: 8, retain: true)));
        yield return ("publish-attribute-request", Build(w => MqttPacketWriter.WritePublish(w, "v1/devices/me/attributes/request/1",
            "{\"clientKeys\":\"attribute1,attribute2\",\"sharedKeys\":\"shared1\"}"u8, qos: 2, packetId: 9, dup: true)));
        yield return ("publish-rpc-response", Build(w => MqttPacketWriter.WritePublish(w, "v1/devices/me/rpc/response/12", "{\"result\":\"ok\"}"u8)));
        yield return ("publish-gateway", Build(w => MqttPacketWriter.WritePublish(w, "v1/gateway/telemetry",
            "{\"Device A\":[{\"ts\":1483228800000,\"values\":{\"temperature\":42}}]}"u8, qos: 1, packetId: 10)));
        yield return ("subscribe", Build(w => MqttPacketWriter.WriteSubscribe(w, 11,
            [new("v1/devices/me/attributes", 1), new("v1/devices/me/rpc/request/+", 0), new("v1/devices/me/attributes/response/+", 1), new("sensors/#", 2)])));
        yield return ("unsubscribe", Build(w => MqttPacketWriter.WriteUnsubscribe(w, 12, [new("v1/devices/me/attributes", 0), new("+/+/#", 0)])));
        yield return ("acks", Build(w =>
        {
            MqttPacketWriter.WritePubAck(w, 1);
            MqttPacketWriter.WritePubRec(w, 2);
            MqttPacketWriter.WritePubRel(w, 2);
            MqttPacketWriter.WritePubComp(w, 2);
            MqttPacketWriter.WriteUnsubAck(w, 3);
            MqttPacketWriter.WriteConnAck(w, MqttConnectReturnCode.Accepted, sessionPresent: true);
            MqttPacketWriter.WriteSubAck(w, 4, [0x00, 0x01, 0x80]);
            MqttPacketWriter.WritePingResp(w);
        }));
        yield return ("session", Build(w =>
        {
            MqttPacketWriter.WriteConnect(w, "dev", "A1_TEST_TOKEN");
            MqttPacketWriter.WriteSubscribe(w, 1, [new("v1/devices/me/rpc/request/+", 1)]);
            MqttPacketWriter.WritePublish(w, "v1/devices/me/telemetry", telemetry, qos: 1, packetId: 2);
            MqttPacketWriter.WritePingReq(w);
            MqttPacketWriter.WritePublish(w, "v1/devices/me/telemetry", new byte[300], qos: 0);
            MqttPacketWriter.WriteDisconnect(w);
        }));
    }
}
