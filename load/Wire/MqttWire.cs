using System.Buffers.Binary;
using System.Text;

namespace Perf.Load.Wire;

/// <summary>
/// The few MQTT 3.1.1 packets a load client needs, encoded once per run (pre-encoded, patched in place).
/// Deliberately independent of src/Kestrel.Mqtt: the generator must be able to judge that codec.
/// </summary>
public static class MqttWire
{
    public const byte ConnAckType = 2;
    public const byte PubAckType = 4;
    public const int PubAckLength = 4;

    /// <summary>CONNECT with clean session, optional username/password (MQTT 3.1.1 §3.1).</summary>
    public static byte[] Connect(string clientId, string? username, string? password, ushort keepAliveSeconds)
    {
        var id = Encoding.UTF8.GetBytes(clientId);
        var user = username is null ? null : Encoding.UTF8.GetBytes(username);
        var pass = password is null ? null : Encoding.UTF8.GetBytes(password);
        var remaining = 10 + 2 + id.Length + (user is null ? 0 : 2 + user.Length) + (pass is null ? 0 : 2 + pass.Length);
        var packet = new byte[1 + VarIntLength(remaining) + remaining];
        var span = packet.AsSpan();
        span[0] = 0x10;
        var o = 1 + WriteVarInt(span[1..], remaining);
        o += WriteString(span[o..], "MQTT"u8);
        span[o++] = 4; // protocol level 3.1.1
        byte flags = 0x02; // clean session
        if (user is not null)
        {
            flags |= 0x80;
        }

        if (pass is not null)
        {
            flags |= 0x40;
        }

        span[o++] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(span[o..], keepAliveSeconds);
        o += 2;
        o += WriteString(span[o..], id);
        if (user is not null)
        {
            o += WriteString(span[o..], user);
        }

        if (pass is not null)
        {
            o += WriteString(span[o..], pass);
        }

        return o == packet.Length ? packet : throw new InvalidOperationException("CONNECT length mismatch.");
    }

    /// <summary>A PUBLISH packet; for QoS 1 the packet id sits at <paramref name="packetIdOffset"/> (to patch per send).</summary>
    public static byte[] Publish(string topic, ReadOnlySpan<byte> payload, int qos, out int packetIdOffset)
    {
        var t = Encoding.UTF8.GetBytes(topic);
        var remaining = 2 + t.Length + (qos > 0 ? 2 : 0) + payload.Length;
        var packet = new byte[1 + VarIntLength(remaining) + remaining];
        var span = packet.AsSpan();
        span[0] = (byte)(0x30 | (qos << 1));
        var o = 1 + WriteVarInt(span[1..], remaining);
        o += WriteString(span[o..], t);
        packetIdOffset = qos > 0 ? o : -1;
        if (qos > 0)
        {
            BinaryPrimitives.WriteUInt16BigEndian(span[o..], 1);
            o += 2;
        }

        payload.CopyTo(span[o..]);
        return packet;
    }

    public const byte PublishType = 3;
    public const byte SubAckType = 9;

    /// <summary>Size of a QoS 0 PUBLISH whose topic is <paramref name="topicLength"/> bytes (see <see cref="WritePublishQos0"/>).</summary>
    public static int PublishQos0Size(int topicLength, int payloadLength)
    {
        var remaining = 2 + topicLength + payloadLength;
        return 1 + VarIntLength(remaining) + remaining;
    }

    /// <summary>
    /// Writes a QoS 0 PUBLISH to <paramref name="topicPrefix"/> + <paramref name="topicSuffix"/> into
    /// <paramref name="destination"/> (at least <see cref="PublishQos0Size"/> bytes) without allocating; returns the bytes written.
    /// </summary>
    public static int WritePublishQos0(Span<byte> destination, ReadOnlySpan<byte> topicPrefix, ReadOnlySpan<byte> topicSuffix, ReadOnlySpan<byte> payload)
    {
        var topicLength = topicPrefix.Length + topicSuffix.Length;
        var remaining = 2 + topicLength + payload.Length;
        destination[0] = 0x30;
        var o = 1 + WriteVarInt(destination[1..], remaining);
        BinaryPrimitives.WriteUInt16BigEndian(destination[o..], (ushort)topicLength);
        o += 2;
        topicPrefix.CopyTo(destination[o..]);
        o += topicPrefix.Length;
        topicSuffix.CopyTo(destination[o..]);
        o += topicSuffix.Length;
        payload.CopyTo(destination[o..]);
        return o + payload.Length;
    }

    /// <summary>SUBSCRIBE to one topic filter (MQTT 3.1.1 §3.8).</summary>
    public static byte[] Subscribe(ushort packetId, string filter, int qos)
    {
        var f = Encoding.UTF8.GetBytes(filter);
        var remaining = 2 + 2 + f.Length + 1;
        var packet = new byte[1 + VarIntLength(remaining) + remaining];
        var span = packet.AsSpan();
        span[0] = 0x82;
        var o = 1 + WriteVarInt(span[1..], remaining);
        BinaryPrimitives.WriteUInt16BigEndian(span[o..], packetId);
        o += 2;
        o += WriteString(span[o..], f);
        span[o] = (byte)qos;
        return packet;
    }

    /// <summary>
    /// Splits a received PUBLISH (<paramref name="packet"/> is the whole packet, fixed header included,
    /// <paramref name="headerLength"/> from <see cref="TryReadFixedHeader"/>) into topic, packet id (0 at QoS 0) and payload.
    /// </summary>
    public static bool TryParsePublish(ReadOnlySpan<byte> packet, int headerLength, out ReadOnlySpan<byte> topic, out ushort packetId, out ReadOnlySpan<byte> payload)
    {
        topic = default;
        payload = default;
        packetId = 0;
        var qos = (packet[0] >> 1) & 3;
        var body = packet[headerLength..];
        if (body.Length < 2)
        {
            return false;
        }

        var topicLength = BinaryPrimitives.ReadUInt16BigEndian(body);
        var o = 2 + topicLength + (qos > 0 ? 2 : 0);
        if (body.Length < o)
        {
            return false;
        }

        topic = body.Slice(2, topicLength);
        if (qos > 0)
        {
            packetId = BinaryPrimitives.ReadUInt16BigEndian(body[(2 + topicLength)..]);
        }

        payload = body[o..];
        return true;
    }

    /// <summary>PUBACK for <paramref name="packetId"/>, written into <paramref name="destination"/> (4 bytes).</summary>
    public static void WritePubAck(Span<byte> destination, ushort packetId)
    {
        destination[0] = 0x40;
        destination[1] = 2;
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], packetId);
    }

    public static ReadOnlySpan<byte> Disconnect => [0xE0, 0x00];

    /// <summary>
    /// Reads one packet's fixed header from <paramref name="buffer"/>; false when more bytes are needed.
    /// <paramref name="headerLength"/> + <paramref name="remaining"/> is the whole packet.
    /// </summary>
    public static bool TryReadFixedHeader(ReadOnlySpan<byte> buffer, out byte type, out int headerLength, out int remaining)
    {
        type = 0;
        headerLength = 0;
        remaining = 0;
        if (buffer.Length < 2)
        {
            return false;
        }

        var multiplier = 1;
        for (var i = 1; i <= 4; i++)
        {
            if (i >= buffer.Length)
            {
                return false;
            }

            var b = buffer[i];
            remaining += (b & 0x7F) * multiplier;
            if ((b & 0x80) == 0)
            {
                type = (byte)(buffer[0] >> 4);
                headerLength = i + 1;
                return true;
            }

            multiplier *= 128;
        }

        throw new InvalidDataException("Malformed remaining length (MQTT 3.1.1 §2.2.3).");
    }

    /// <summary>
    /// The <c>--unique</c> payload: <c>{"ts":T,"values":{"seq":S}}</c> with a 13-digit ts and a 10-digit seq,
    /// patched in place per message (<see cref="StampUnique"/>), so every message is its own history point.
    /// </summary>
    public static byte[] UniquePayload(out int tsOffset, out int seqOffset)
    {
        const string Head = "{\"ts\":";
        const string Middle = ",\"values\":{\"seq\":";
        tsOffset = Head.Length;
        seqOffset = Head.Length + 13 + Middle.Length;
        return Encoding.ASCII.GetBytes(Head + new string('0', 13) + Middle + new string('0', 10) + "}}");
    }

    /// <summary>Seq values start here so they always have 10 digits (JSON numbers have no leading zeros).</summary>
    public const long UniqueSeqBase = 1_000_000_000;

    /// <summary>Writes ts = <paramref name="baseTs"/> + <paramref name="unique"/> and seq = <see cref="UniqueSeqBase"/> + <paramref name="unique"/>.</summary>
    public static void StampUnique(Span<byte> packet, int tsOffset, int seqOffset, long baseTs, long unique)
    {
        WriteDigits(packet.Slice(tsOffset, 13), baseTs + unique);
        WriteDigits(packet.Slice(seqOffset, 10), UniqueSeqBase + unique);
    }

    private static void WriteDigits(Span<byte> destination, long value)
    {
        for (var i = destination.Length - 1; i >= 0; i--)
        {
            destination[i] = (byte)('0' + (value % 10));
            value /= 10;
        }
    }

    /// <summary>A JSON telemetry payload of exactly <paramref name="size"/> bytes (minimum 7).</summary>
    public static byte[] JsonPayload(int size)
    {
        const string Head = "{\"temperature\":21.5,\"humidity\":40,\"pad\":\"";
        const string Tail = "\"}";
        if (size >= Head.Length + Tail.Length)
        {
            return Encoding.ASCII.GetBytes(Head + new string('x', size - Head.Length - Tail.Length) + Tail);
        }

        const string Small = "{\"t\":1}";
        var text = Small + new string(' ', Math.Max(0, size - Small.Length));
        return Encoding.ASCII.GetBytes(text);
    }

    /// <summary>
    /// The three-number telemetry object, padded with spaces before the closing brace to <paramref name="size"/>
    /// bytes (no string value, so the server stores only numbers).
    /// </summary>
    public static byte[] NumericJsonPayload(int size)
    {
        const string Body = "{\"temperature\":21.5,\"humidity\":40,\"pressure\":101325";
        return Encoding.ASCII.GetBytes(Body + new string(' ', Math.Max(0, size - Body.Length - 1)) + "}");
    }

    private static int WriteString(Span<byte> span, ReadOnlySpan<byte> value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(span, checked((ushort)value.Length));
        value.CopyTo(span[2..]);
        return 2 + value.Length;
    }

    private static int VarIntLength(int value) => value < 128 ? 1 : value < 16_384 ? 2 : value < 2_097_152 ? 3 : 4;

    private static int WriteVarInt(Span<byte> span, int value)
    {
        var i = 0;
        do
        {
            var b = (byte)(value % 128);
            value /= 128;
            span[i++] = value > 0 ? (byte)(b | 0x80) : b;
        }
        while (value > 0);
        return i;
    }
}
