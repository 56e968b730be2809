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
