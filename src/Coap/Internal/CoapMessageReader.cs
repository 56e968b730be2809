using System.Buffers.Binary;

namespace Perf.Coap.Internal;

/// <summary>
/// A parsed view over one datagram (RFC 7252 §3): header fields, token, the validated option region and
/// the payload, all slices of the receive buffer. Construction validates the whole message so that
/// enumerating options afterwards cannot fail; a malformed message throws <see cref="CoapFormatException"/>.
/// </summary>
internal readonly ref struct CoapMessageReader
{
    public readonly CoapMessageType Type;
    public readonly byte Code;
    public readonly ushort MessageId;
    public readonly ReadOnlySpan<byte> Token;
    public readonly ReadOnlySpan<byte> OptionBytes;
    public readonly ReadOnlySpan<byte> Payload;

    public CoapMessageReader(ReadOnlySpan<byte> datagram)
    {
        if (datagram.Length < 4)
        {
            CoapThrow.Format(CoapFormatError.TooShort);
        }

        if ((datagram[0] >> 6) != 1)
        {
            CoapThrow.Format(CoapFormatError.UnknownVersion); // §3: silently ignored by the caller.
        }

        Type = (CoapMessageType)((datagram[0] >> 4) & 0x3);
        var tokenLength = datagram[0] & 0xF;
        Code = datagram[1];
        MessageId = BinaryPrimitives.ReadUInt16BigEndian(datagram[2..]);
        if (tokenLength > 8)
        {
            CoapThrow.Format(CoapFormatError.TokenLengthReserved); // §3: TKL 9-15 is a format error.
        }

        if (Code == CoapCode.Empty && datagram.Length != 4)
        {
            CoapThrow.Format(CoapFormatError.EmptyMessageNotEmpty); // §4.1: an empty message has nothing after the header.
        }

        if (datagram.Length < 4 + tokenLength)
        {
            CoapThrow.Format(CoapFormatError.TruncatedToken);
        }

        Token = datagram.Slice(4, tokenLength);
        var rest = datagram[(4 + tokenLength)..];
        var optionsLength = ValidateOptions(rest, out var payloadStart);
        OptionBytes = rest[..optionsLength];
        Payload = payloadStart < 0 ? default : rest[payloadStart..];
    }

    public bool IsEmpty => Code == CoapCode.Empty;

    public CoapOptionEnumerator Options => new(OptionBytes);

    /// <summary>Reads the header only, for answering a message whose body is malformed (§4.2 RST needs the id).</summary>
    public static bool TryReadHeader(ReadOnlySpan<byte> datagram, out CoapMessageType type, out ushort messageId)
    {
        if (datagram.Length < 4 || (datagram[0] >> 6) != 1)
        {
            type = default;
            messageId = 0;
            return false;
        }

        type = (CoapMessageType)((datagram[0] >> 4) & 0x3);
        messageId = BinaryPrimitives.ReadUInt16BigEndian(datagram[2..]);
        return true;
    }

    /// <summary>Walks every option (§3.1); returns the length of the option region and where the payload starts (-1: none).</summary>
    private static int ValidateOptions(ReadOnlySpan<byte> bytes, out int payloadStart)
    {
        var position = 0;
        var number = 0;
        while (position < bytes.Length)
        {
            if (bytes[position] == 0xFF)
            {
                if (position + 1 == bytes.Length)
                {
                    CoapThrow.Format(CoapFormatError.EmptyPayloadAfterMarker); // §3: marker followed by nothing.
                }

                payloadStart = position + 1;
                return position;
            }

            if (!CoapOptionEnumerator.TryReadOption(bytes, ref position, out var delta, out _, out var error))
            {
                CoapThrow.Format(error);
            }

            number += delta;
            if (number > ushort.MaxValue)
            {
                CoapThrow.Format(CoapFormatError.OptionNumberOverflow);
            }
        }

        payloadStart = -1;
        return position;
    }
}

/// <summary>One option: its absolute number and value bytes.</summary>
internal readonly ref struct CoapOption(ushort number, ReadOnlySpan<byte> value)
{
    public readonly ushort Number = number;
    public readonly ReadOnlySpan<byte> Value = value;

    /// <summary>§3.2 uint: big-endian, leading zeros may be omitted, empty is 0.</summary>
    public uint GetUInt()
    {
        uint result = 0;
        var count = Math.Min(Value.Length, 4);
        for (var i = Value.Length - count; i < Value.Length; i++)
        {
            result = (result << 8) | Value[i];
        }

        return result;
    }
}

/// <summary>Enumerates an option region already validated by <see cref="CoapMessageReader"/>.</summary>
internal ref struct CoapOptionEnumerator(ReadOnlySpan<byte> bytes)
{
    private readonly ReadOnlySpan<byte> _bytes = bytes;
    private int _position;
    private int _number;

    public CoapOption Current { get; private set; }

    public readonly CoapOptionEnumerator GetEnumerator() => this;

    public bool MoveNext()
    {
        var position = _position;
        if (position >= _bytes.Length || !TryReadOption(_bytes, ref position, out var delta, out var value, out _))
        {
            return false;
        }

        _position = position;
        _number += delta;
        Current = new CoapOption((ushort)_number, value);
        return true;
    }

    /// <summary>
    /// §3.1: a byte of 4-bit delta and 4-bit length; 13 adds one extended byte (value - 13), 14 adds two
    /// (value - 269), 15 is reserved (only 0xFF, the payload marker, may carry it).
    /// </summary>
    internal static bool TryReadOption(ReadOnlySpan<byte> bytes, scoped ref int position, out int delta, out ReadOnlySpan<byte> value, out CoapFormatError error)
    {
        value = default;
        delta = 0;
        var p = position;
        var first = bytes[p++];
        if (!TryReadExtended(bytes, ref p, first >> 4, out delta, out error) ||
            !TryReadExtended(bytes, ref p, first & 0xF, out var length, out error))
        {
            return false;
        }

        if (bytes.Length - p < length)
        {
            error = CoapFormatError.TruncatedOption;
            return false;
        }

        value = bytes.Slice(p, length);
        position = p + length;
        return true;
    }

    private static bool TryReadExtended(ReadOnlySpan<byte> bytes, scoped ref int p, int nibble, out int value, out CoapFormatError error)
    {
        error = default;
        switch (nibble)
        {
            case < 13:
                value = nibble;
                return true;
            case 13 when p < bytes.Length:
                value = bytes[p++] + 13;
                return true;
            case 14 when p + 1 < bytes.Length:
                value = BinaryPrimitives.ReadUInt16BigEndian(bytes[p..]) + 269;
                p += 2;
                return true;
            case 15:
                value = 0;
                error = CoapFormatError.ReservedOptionNibble;
                return false;
            default:
                value = 0;
                error = CoapFormatError.TruncatedOption;
                return false;
        }
    }
}

/// <summary>RFC 7959 §2.2 block option value: NUM (up to 20 bits), M, SZX (block size 2^(SZX+4)).</summary>
internal readonly record struct CoapBlock(int Number, bool More, int SizeExponent)
{
    public int Size => 1 << (SizeExponent + 4);

    public int Offset => Number * Size;

    public uint Encode() => ((uint)Number << 4) | (More ? 8u : 0u) | (uint)SizeExponent;

    /// <summary>SZX 7 is reserved (§2.2) and NUM is at most 20 bits.</summary>
    public static bool TryDecode(uint value, out CoapBlock block)
    {
        var szx = (int)(value & 0x7);
        block = new CoapBlock((int)(value >> 4), (value & 0x8) != 0, szx);
        return szx != 7 && value <= 0xFFFFFF;
    }

    /// <summary>The largest SZX whose block size is at most <paramref name="bytes"/>.</summary>
    public static int ExponentFor(int bytes) => Math.Clamp(System.Numerics.BitOperations.Log2((uint)Math.Max(bytes, 16)) - 4, 0, 6);
}
