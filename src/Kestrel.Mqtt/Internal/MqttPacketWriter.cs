using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>A topic filter and its requested QoS, for <see cref="MqttPacketWriter.WriteSubscribe"/>.</summary>
internal readonly record struct MqttSubscription(string Filter, byte QoS);

/// <summary>
/// MQTT 3.1.1 packet writer: every method sizes the packet first, then <c>GetSpan(total)</c>, fills and
/// <c>Advance(total)</c> once.
/// </summary>
internal static class MqttPacketWriter
{
    public static ReadOnlySpan<byte> PingReq => [0xC0, 0x00];
    public static ReadOnlySpan<byte> PingResp => [0xD0, 0x00];
    public static ReadOnlySpan<byte> Disconnect => [0xE0, 0x00];

    public static void WritePingReq(IBufferWriter<byte> output) => output.Write(PingReq);

    public static void WritePingResp(IBufferWriter<byte> output) => output.Write(PingResp);

    public static void WriteDisconnect(IBufferWriter<byte> output) => output.Write(Disconnect);

    public static void WriteConnAck(IBufferWriter<byte> output, MqttConnectReturnCode code, bool sessionPresent = false)
    {
        var span = output.GetSpan(4);
        span[0] = 0x20;
        span[1] = 0x02;
        span[2] = sessionPresent ? (byte)1 : (byte)0;
        span[3] = (byte)code;
        output.Advance(4);
    }

    public static void WritePubAck(IBufferWriter<byte> output, ushort packetId) => WriteIdOnly(output, 0x40, packetId);

    public static void WritePubRec(IBufferWriter<byte> output, ushort packetId) => WriteIdOnly(output, 0x50, packetId);

    public static void WritePubRel(IBufferWriter<byte> output, ushort packetId) => WriteIdOnly(output, 0x62, packetId);

    public static void WritePubComp(IBufferWriter<byte> output, ushort packetId) => WriteIdOnly(output, 0x70, packetId);

    public static void WriteUnsubAck(IBufferWriter<byte> output, ushort packetId) => WriteIdOnly(output, 0xB0, packetId);

    public static void WriteSubAck(IBufferWriter<byte> output, ushort packetId, ReadOnlySpan<byte> returnCodes)
    {
        int remaining = 2 + returnCodes.Length;
        int total = 1 + RemainingLengthSize(remaining) + remaining;
        var span = output.GetSpan(total);
        span[0] = 0x90;
        int pos = 1 + WriteRemainingLength(span[1..], remaining);
        BinaryPrimitives.WriteUInt16BigEndian(span[pos..], packetId);
        returnCodes.CopyTo(span[(pos + 2)..]);
        output.Advance(total);
    }

    /// <summary>PUBLISH with a pre-encoded UTF-8 topic. <paramref name="packetId"/> is ignored for QoS 0.</summary>
    public static void WritePublish(IBufferWriter<byte> output, ReadOnlySpan<byte> topicUtf8, ReadOnlySpan<byte> payload,
        byte qos = 0, ushort packetId = 0, bool dup = false, bool retain = false)
    {
        int total = PublishSize(topicUtf8.Length, payload.Length, qos);
        WritePublish(output.GetSpan(total), topicUtf8, payload, qos, packetId, dup, retain);
        output.Advance(total);
    }

    /// <summary>Bytes a PUBLISH with these lengths occupies on the wire.</summary>
    public static int PublishSize(int topicLength, int payloadLength, byte qos)
    {
        int remaining = 2 + topicLength + (qos > 0 ? 2 : 0) + payloadLength;
        return 1 + RemainingLengthSize(remaining) + remaining;
    }

    /// <summary>PUBLISH into <paramref name="span"/> (at least <see cref="PublishSize"/> bytes); returns the bytes written.</summary>
    public static int WritePublish(Span<byte> span, ReadOnlySpan<byte> topicUtf8, ReadOnlySpan<byte> payload,
        byte qos = 0, ushort packetId = 0, bool dup = false, bool retain = false)
    {
        int remaining = 2 + topicUtf8.Length + (qos > 0 ? 2 : 0) + payload.Length;
        int pos = WritePublishHeader(span, remaining, qos, dup, retain);
        BinaryPrimitives.WriteUInt16BigEndian(span[pos..], (ushort)topicUtf8.Length);
        topicUtf8.CopyTo(span[(pos + 2)..]);
        pos += 2 + topicUtf8.Length;
        if (qos > 0)
        {
            BinaryPrimitives.WriteUInt16BigEndian(span[pos..], packetId);
            pos += 2;
        }

        payload.CopyTo(span[pos..]);
        return pos + payload.Length;
    }

    /// <summary>PUBLISH with a string topic, encoded straight into the output.</summary>
    public static void WritePublish(IBufferWriter<byte> output, string topic, ReadOnlySpan<byte> payload,
        byte qos = 0, ushort packetId = 0, bool dup = false, bool retain = false)
    {
        int topicLength = Encoding.UTF8.GetByteCount(topic);
        int remaining = 2 + topicLength + (qos > 0 ? 2 : 0) + payload.Length;
        int total = 1 + RemainingLengthSize(remaining) + remaining;
        var span = output.GetSpan(total);
        int pos = WritePublishHeader(span, remaining, qos, dup, retain);
        BinaryPrimitives.WriteUInt16BigEndian(span[pos..], (ushort)topicLength);
        Encoding.UTF8.GetBytes(topic, span[(pos + 2)..]);
        pos += 2 + topicLength;
        if (qos > 0)
        {
            BinaryPrimitives.WriteUInt16BigEndian(span[pos..], packetId);
            pos += 2;
        }

        payload.CopyTo(span[pos..]);
        output.Advance(total);
    }

    public static void WriteConnect(IBufferWriter<byte> output, string clientId, string? userName = null, ReadOnlySpan<byte> password = default,
        ushort keepAliveSeconds = 60, bool cleanSession = true, byte protocolLevel = 4, string? willTopic = null, ReadOnlySpan<byte> willMessage = default,
        byte willQoS = 0, bool willRetain = false)
    {
        var name = protocolLevel == 3 ? "MQIsdp"u8 : "MQTT"u8;
        int clientIdLength = Encoding.UTF8.GetByteCount(clientId);
        int userNameLength = userName is null ? 0 : Encoding.UTF8.GetByteCount(userName);
        int willTopicLength = willTopic is null ? 0 : Encoding.UTF8.GetByteCount(willTopic);
        bool hasPassword = userName is not null && !password.IsEmpty;
        int remaining = 2 + name.Length + 1 + 1 + 2 + 2 + clientIdLength
            + (willTopic is null ? 0 : 2 + willTopicLength + 2 + willMessage.Length)
            + (userName is null ? 0 : 2 + userNameLength)
            + (hasPassword ? 2 + password.Length : 0);
        int total = 1 + RemainingLengthSize(remaining) + remaining;
        var span = output.GetSpan(total);
        span[0] = 0x10;
        int pos = 1 + WriteRemainingLength(span[1..], remaining);
        pos += WriteBytes(span[pos..], name);
        span[pos++] = protocolLevel;
        byte flags = (byte)((cleanSession ? 0x02 : 0) | (userName is not null ? 0x80 : 0) | (hasPassword ? 0x40 : 0));
        if (willTopic is not null)
        {
            flags |= (byte)(0x04 | (willQoS << 3) | (willRetain ? 0x20 : 0));
        }

        span[pos++] = flags;
        BinaryPrimitives.WriteUInt16BigEndian(span[pos..], keepAliveSeconds);
        pos += 2;
        pos += WriteString(span[pos..], clientId, clientIdLength);
        if (willTopic is not null)
        {
            pos += WriteString(span[pos..], willTopic, willTopicLength);
            pos += WriteBytes(span[pos..], willMessage);
        }

        if (userName is not null)
        {
            pos += WriteString(span[pos..], userName, userNameLength);
        }

        if (hasPassword)
        {
            WriteBytes(span[pos..], password);
        }

        output.Advance(total);
    }

    public static void WriteSubscribe(IBufferWriter<byte> output, ushort packetId, ReadOnlySpan<MqttSubscription> subscriptions) =>
        WriteFilters(output, 0x82, packetId, subscriptions, withQoS: true);

    public static void WriteUnsubscribe(IBufferWriter<byte> output, ushort packetId, ReadOnlySpan<MqttSubscription> subscriptions) =>
        WriteFilters(output, 0xA2, packetId, subscriptions, withQoS: false);

    private static void WriteFilters(IBufferWriter<byte> output, byte header, ushort packetId, ReadOnlySpan<MqttSubscription> subscriptions, bool withQoS)
    {
        int remaining = 2;
        foreach (var s in subscriptions)
        {
            remaining += 2 + Encoding.UTF8.GetByteCount(s.Filter) + (withQoS ? 1 : 0);
        }

        int total = 1 + RemainingLengthSize(remaining) + remaining;
        var span = output.GetSpan(total);
        span[0] = header;
        int pos = 1 + WriteRemainingLength(span[1..], remaining);
        BinaryPrimitives.WriteUInt16BigEndian(span[pos..], packetId);
        pos += 2;
        foreach (var s in subscriptions)
        {
            pos += WriteString(span[pos..], s.Filter, Encoding.UTF8.GetByteCount(s.Filter));
            if (withQoS)
            {
                span[pos++] = s.QoS;
            }
        }

        output.Advance(total);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int RemainingLengthSize(int remaining) => remaining switch
    {
        < 128 => 1,
        < 16_384 => 2,
        < 2_097_152 => 3,
        _ => 4,
    };

    /// <summary>Encodes §2.2.3 variable-length remaining length; returns bytes written.</summary>
    public static int WriteRemainingLength(Span<byte> span, int remaining)
    {
        int i = 0;
        do
        {
            byte b = (byte)(remaining & 0x7F);
            remaining >>= 7;
            if (remaining > 0)
            {
                b |= 0x80;
            }

            span[i++] = b;
        }
        while (remaining > 0);
        return i;
    }

    private static int WritePublishHeader(Span<byte> span, int remaining, byte qos, bool dup, bool retain)
    {
        span[0] = (byte)(0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0));
        return 1 + WriteRemainingLength(span[1..], remaining);
    }

    private static void WriteIdOnly(IBufferWriter<byte> output, byte header, ushort packetId)
    {
        var span = output.GetSpan(4);
        span[0] = header;
        span[1] = 0x02;
        BinaryPrimitives.WriteUInt16BigEndian(span[2..], packetId);
        output.Advance(4);
    }

    private static int WriteString(Span<byte> span, string value, int byteCount)
    {
        BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)byteCount);
        Encoding.UTF8.GetBytes(value, span[2..]);
        return 2 + byteCount;
    }

    private static int WriteBytes(Span<byte> span, ReadOnlySpan<byte> value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)value.Length);
        value.CopyTo(span[2..]);
        return 2 + value.Length;
    }
}
