using System.Buffers;
using System.Diagnostics;
using System.Text;
using System.Runtime.CompilerServices;
using System.Text.Unicode;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// MQTT 3.1.1 frame parser over a <see cref="ReadOnlySequence{T}"/>. On a partial frame it returns false
/// and consumes nothing; the caller owns <c>AdvanceTo(reader.Position, ...)</c>. Violations throw
/// <see cref="MqttProtocolException"/>.
/// </summary>
internal static class MqttPacketReader
{
    /// <summary>Largest remaining length the 4-byte encoding can express (§2.2.3).</summary>
    public const int MaxRemainingLength = 268_435_455;

    /// <param name="maxPacketSize">Largest accepted remaining length; checked before waiting for the body.</param>
    public static bool TryRead(ref SequenceReader<byte> reader, int maxPacketSize, out MqttPacket packet)
    {
        packet = default;
        var r = reader;
        if (!r.TryRead(out byte header))
        {
            return false;
        }

        var type = (MqttPacketType)(header >> 4);
        byte flags = (byte)(header & 0x0F);
        ValidateFixedHeader(type, flags);

        // §2.2.3: at most four bytes, 7 bits each, low group first.
        int remaining = 0;
        for (int shift = 0; ; shift += 7)
        {
            if (!r.TryRead(out byte b))
            {
                return false;
            }

            remaining |= (b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                break;
            }

            if (shift == 21)
            {
                MqttProtocolException.Throw(MqttProtocolError.MalformedRemainingLength);
            }
        }

        // Limits before buffering: reject now, not after the body has arrived.
        if (remaining > maxPacketSize)
        {
            MqttProtocolException.Throw(MqttProtocolError.PacketTooLarge);
        }

        if (r.Remaining < remaining)
        {
            return false;
        }

        var body = r.UnreadSequence.Slice(0, remaining);
        r.Advance(remaining);
        packet = ParseBody(type, flags, body);
        reader = r;
        return true;
    }

    private static void ValidateFixedHeader(MqttPacketType type, byte flags)
    {
        // §2.2.2: PUBREL, SUBSCRIBE, UNSUBSCRIBE carry 0010, PUBLISH its own flags, the rest 0000.
        switch (type)
        {
            case MqttPacketType.Publish:
                if ((flags & 0x06) == 0x06)
                {
                    MqttProtocolException.Throw(MqttProtocolError.InvalidQoS);
                }

                if ((flags & 0x06) == 0 && (flags & 0x08) != 0)
                {
                    MqttProtocolException.Throw(MqttProtocolError.DupOnQoS0);
                }

                break;
            case MqttPacketType.PubRel or MqttPacketType.Subscribe or MqttPacketType.Unsubscribe:
                if (flags != 0x02)
                {
                    MqttProtocolException.Throw(MqttProtocolError.InvalidFixedHeaderFlags);
                }

                break;
            case >= MqttPacketType.Connect and <= MqttPacketType.Disconnect:
                if (flags != 0)
                {
                    MqttProtocolException.Throw(MqttProtocolError.InvalidFixedHeaderFlags);
                }

                break;
            default:
                MqttProtocolException.Throw(MqttProtocolError.ReservedPacketType);
                break;
        }
    }

    private static MqttPacket ParseBody(MqttPacketType type, byte flags, ReadOnlySequence<byte> body) => type switch
    {
        MqttPacketType.Publish => ParsePublish(flags, body),
        MqttPacketType.PubAck or MqttPacketType.PubRec or MqttPacketType.PubRel or MqttPacketType.PubComp or MqttPacketType.UnsubAck
            => new MqttPacket(type, flags, ReadFixedPacketId(body)),
        MqttPacketType.PingReq or MqttPacketType.PingResp or MqttPacketType.Disconnect => ParseEmpty(type, body),
        MqttPacketType.Connect => ParseConnect(body),
        MqttPacketType.ConnAck => ParseConnAck(body),
        MqttPacketType.Subscribe or MqttPacketType.Unsubscribe => ParseSubscribe(type, flags, body),
        MqttPacketType.SubAck => ParseSubAck(body),
        _ => throw new UnreachableException(),
    };

    private static MqttPacket ParsePublish(byte flags, ReadOnlySequence<byte> body)
    {
        var r = new SequenceReader<byte>(body);
        var topic = ReadString(ref r);
        if (topic.IsEmpty)
        {
            MqttProtocolException.Throw(MqttProtocolError.EmptyTopic);
        }

        if (ContainsWildcard(topic))
        {
            MqttProtocolException.Throw(MqttProtocolError.WildcardInTopicName);
        }

        ushort packetId = 0;
        if ((flags & 0x06) != 0)
        {
            packetId = ReadPacketId(ref r);
        }

        return new MqttPacket(MqttPacketType.Publish, flags, packetId, topic, r.UnreadSequence);
    }

    private static MqttPacket ParseEmpty(MqttPacketType type, ReadOnlySequence<byte> body)
    {
        if (!body.IsEmpty)
        {
            MqttProtocolException.Throw(MqttProtocolError.InvalidRemainingLength);
        }

        return new MqttPacket(type, 0);
    }

    private static ushort ReadFixedPacketId(ReadOnlySequence<byte> body)
    {
        if (body.Length != 2)
        {
            MqttProtocolException.Throw(MqttProtocolError.InvalidRemainingLength);
        }

        var r = new SequenceReader<byte>(body);
        return ReadPacketId(ref r);
    }

    private static MqttPacket ParseConnAck(ReadOnlySequence<byte> body)
    {
        if (body.Length != 2)
        {
            MqttProtocolException.Throw(MqttProtocolError.InvalidRemainingLength);
        }

        var r = new SequenceReader<byte>(body);
        r.TryRead(out byte ackFlags);
        r.TryRead(out byte code);
        if ((ackFlags & 0xFE) != 0)
        {
            MqttProtocolException.Throw(MqttProtocolError.InvalidConnAckFlags);
        }

        return new MqttPacket(MqttPacketType.ConnAck, 0, connAckFlags: ackFlags, returnCode: code);
    }

    private static MqttPacket ParseSubAck(ReadOnlySequence<byte> body)
    {
        var r = new SequenceReader<byte>(body);
        ushort packetId = ReadPacketId(ref r);
        var codes = r.UnreadSequence;
        while (r.TryRead(out byte code))
        {
            if (code is not (0x00 or 0x01 or 0x02 or 0x80))
            {
                MqttProtocolException.Throw(MqttProtocolError.InvalidSubAckReturnCode);
            }
        }

        return new MqttPacket(MqttPacketType.SubAck, 0, packetId, payload: codes);
    }

    private static MqttPacket ParseSubscribe(MqttPacketType type, byte flags, ReadOnlySequence<byte> body)
    {
        var r = new SequenceReader<byte>(body);
        ushort packetId = ReadPacketId(ref r);
        var list = r.UnreadSequence;
        if (r.End)
        {
            MqttProtocolException.Throw(MqttProtocolError.EmptySubscription);
        }

        while (!r.End)
        {
            var filter = ReadString(ref r);
            ValidateTopicFilter(filter);
            if (type == MqttPacketType.Subscribe)
            {
                if (!r.TryRead(out byte options))
                {
                    MqttProtocolException.Throw(MqttProtocolError.MalformedPacket);
                }

                // §3.8.3.1: upper six bits reserved, QoS 3 invalid.
                if ((options & 0xFC) != 0 || options == 3)
                {
                    MqttProtocolException.Throw(MqttProtocolError.InvalidSubscribeOptions);
                }
            }
        }

        return new MqttPacket(type, flags, packetId, payload: list);
    }

    private static MqttPacket ParseConnect(ReadOnlySequence<byte> body)
    {
        var r = new SequenceReader<byte>(body);
        var name = ReadString(ref r);
        byte level = 0, connectFlags = 0;
        short keepAlive = 0;
        if (!r.TryRead(out level) || !r.TryRead(out connectFlags) || !r.TryReadBigEndian(out keepAlive))
        {
            MqttProtocolException.Throw(MqttProtocolError.MalformedPacket);
        }

        // §3.1.2.1/§3.1.2.2: 3.1.1 is "MQTT" level 4; 3.1 clients send "MQIsdp" level 3.
        bool known = (level == 4 && SequenceEquals(name, "MQTT"u8)) || (level == 3 && SequenceEquals(name, "MQIsdp"u8));
        if (!known)
        {
            MqttProtocolException.Throw(MqttProtocolError.UnacceptableProtocolVersion);
        }

        if ((connectFlags & 0x01) != 0)
        {
            MqttProtocolException.Throw(MqttProtocolError.ConnectReservedFlag);
        }

        bool cleanSession = (connectFlags & 0x02) != 0;
        bool willFlag = (connectFlags & 0x04) != 0;
        byte willQoS = (byte)((connectFlags >> 3) & 0x03);
        bool willRetain = (connectFlags & 0x20) != 0;
        bool hasPassword = (connectFlags & 0x40) != 0;
        bool hasUserName = (connectFlags & 0x80) != 0;
        if (willQoS == 3 || (!willFlag && (willQoS != 0 || willRetain)))
        {
            MqttProtocolException.Throw(MqttProtocolError.InvalidWillFlags);
        }

        if (hasPassword && !hasUserName)
        {
            MqttProtocolException.Throw(MqttProtocolError.PasswordWithoutUserName);
        }

        string clientId = ReadString(ref r) is { IsEmpty: false } id ? Utf8String(id) : string.Empty;
        if (clientId.Length == 0 && !cleanSession)
        {
            MqttProtocolException.Throw(MqttProtocolError.IdentifierRejected);
        }

        string? willTopic = null;
        byte[]? willMessage = null;
        if (willFlag)
        {
            var wt = ReadString(ref r);
            if (wt.IsEmpty)
            {
                MqttProtocolException.Throw(MqttProtocolError.EmptyTopic);
            }

            if (ContainsWildcard(wt))
            {
                MqttProtocolException.Throw(MqttProtocolError.WildcardInTopicName);
            }

            willTopic = Utf8String(wt);
            willMessage = ReadBinary(ref r).ToArray();
        }

        byte[]? userName = hasUserName ? ReadString(ref r).ToArray() : null;
        byte[]? password = hasPassword ? ReadBinary(ref r).ToArray() : null;
        if (!r.End)
        {
            MqttProtocolException.Throw(MqttProtocolError.MalformedPacket);
        }

        var connect = new MqttConnect
        {
            ProtocolName = level == 4 ? "MQTT" : "MQIsdp",
            ProtocolLevel = level,
            CleanSession = cleanSession,
            KeepAliveSeconds = (ushort)keepAlive,
            ClientId = clientId,
            WillTopic = willTopic,
            WillMessage = willMessage,
            WillQoS = willQoS,
            WillRetain = willRetain,
            UserName = userName,
            Password = password,
        };
        return new MqttPacket(MqttPacketType.Connect, 0, connect: connect);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort ReadPacketId(ref SequenceReader<byte> r)
    {
        if (!r.TryReadBigEndian(out short id))
        {
            MqttProtocolException.Throw(MqttProtocolError.MalformedPacket);
        }

        if (id == 0)
        {
            MqttProtocolException.Throw(MqttProtocolError.ZeroPacketId);
        }

        return (ushort)id;
    }

    private static ReadOnlySequence<byte> ReadBinary(ref SequenceReader<byte> r)
    {
        if (!r.TryReadBigEndian(out short len) || r.Remaining < (ushort)len)
        {
            MqttProtocolException.Throw(MqttProtocolError.MalformedPacket);
        }

        var value = r.UnreadSequence.Slice(0, (ushort)len);
        r.Advance((ushort)len);
        return value;
    }

    /// <summary>A length-prefixed UTF-8 string (§1.5.3): well-formed, no surrogates, no U+0000.</summary>
    private static ReadOnlySequence<byte> ReadString(ref SequenceReader<byte> r)
    {
        var value = ReadBinary(ref r);
        if (value.IsSingleSegment)
        {
            ValidateUtf8(value.FirstSpan);
        }
        else
        {
            ValidateUtf8Multi(value);
        }

        return value;
    }

    private static void ValidateUtf8Multi(ReadOnlySequence<byte> value)
    {
        // Rare (a string split across pipe segments): copy to contiguous scratch; at most 64 KiB.
        int len = (int)value.Length;
        byte[]? rented = null;
        Span<byte> scratch = len <= 256 ? stackalloc byte[256] : (rented = ArrayPool<byte>.Shared.Rent(len));
        try
        {
            value.CopyTo(scratch);
            ValidateUtf8(scratch[..len]);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static void ValidateUtf8(ReadOnlySpan<byte> span)
    {
        // Utf8.IsValid rejects overlongs and encoded surrogates (U+D800..U+DFFF).
        if (span.Contains((byte)0) || !Utf8.IsValid(span))
        {
            MqttProtocolException.Throw(MqttProtocolError.InvalidUtf8String);
        }
    }

    private static bool ContainsWildcard(in ReadOnlySequence<byte> topic)
    {
        if (topic.IsSingleSegment)
        {
            return topic.FirstSpan.IndexOfAny((byte)'+', (byte)'#') >= 0;
        }

        foreach (var segment in topic)
        {
            if (segment.Span.IndexOfAny((byte)'+', (byte)'#') >= 0)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>§4.7.1: '+' fills a whole level; '#' fills the whole last level.</summary>
    private static void ValidateTopicFilter(in ReadOnlySequence<byte> filter)
    {
        if (filter.IsEmpty)
        {
            MqttProtocolException.Throw(MqttProtocolError.EmptyTopic);
        }

        byte prev = (byte)'/';
        long i = 0, last = filter.Length - 1;
        foreach (var segment in filter)
        {
            var span = segment.Span;
            for (int j = 0; j < span.Length; j++, i++)
            {
                byte c = span[j];
                if (c is (byte)'+' or (byte)'#')
                {
                    bool nextIsEnd = i == last;
                    bool nextIsSlash = !nextIsEnd && NextByte(filter, span, j, i) == (byte)'/';
                    if (prev != (byte)'/' || (c == (byte)'#' ? !nextIsEnd : !(nextIsEnd || nextIsSlash)))
                    {
                        MqttProtocolException.Throw(MqttProtocolError.InvalidTopicFilter);
                    }
                }

                prev = c;
            }
        }
    }

    private static byte NextByte(in ReadOnlySequence<byte> filter, ReadOnlySpan<byte> span, int j, long i) =>
        j + 1 < span.Length ? span[j + 1] : filter.Slice(i + 1, 1).FirstSpan[0];

    private static bool SequenceEquals(in ReadOnlySequence<byte> value, ReadOnlySpan<byte> expected) =>
        value.IsSingleSegment ? value.FirstSpan.SequenceEqual(expected) : value.Length == expected.Length && value.ToArray().AsSpan().SequenceEqual(expected);

    private static string Utf8String(in ReadOnlySequence<byte> value) => EncodingExtensions.GetString(Encoding.UTF8, value);
}
