using System.Buffers.Binary;

namespace Perf.Coap.Internal;

/// <summary>
/// Writes one message into a span: header, token, options in ascending number order (delta encoded,
/// §3.1), payload marker and payload. Callers size first with the static <c>Size</c> helpers, then write
/// once into a buffer at least that large.
/// </summary>
internal ref struct CoapMessageWriter
{
    private readonly Span<byte> _buffer;
    private int _position;
    private int _lastOption;

    public CoapMessageWriter(Span<byte> buffer, CoapMessageType type, byte code, ushort messageId, ReadOnlySpan<byte> token)
    {
        _buffer = buffer;
        buffer[0] = (byte)(0x40 | ((int)type << 4) | token.Length);
        buffer[1] = code;
        BinaryPrimitives.WriteUInt16BigEndian(buffer[2..], messageId);
        token.CopyTo(buffer[4..]);
        _position = 4 + token.Length;
    }

    public readonly int Length => _position;

    public static int HeaderSize(ReadOnlySpan<byte> token) => 4 + token.Length;

    /// <summary>Encoded size of an option of <paramref name="length"/> bytes after the one numbered <paramref name="delta"/> lower.</summary>
    public static int OptionSize(int delta, int length) => 1 + ExtendedSize(delta) + ExtendedSize(length) + length;

    /// <summary>§3.2: a uint option drops its leading zero bytes (0 is the empty value).</summary>
    public static int UIntLength(uint value) => value switch
    {
        0 => 0,
        <= 0xFF => 1,
        <= 0xFFFF => 2,
        <= 0xFFFFFF => 3,
        _ => 4,
    };

    public static int PayloadSize(int length) => length == 0 ? 0 : 1 + length;

    private static int ExtendedSize(int value) => value < 13 ? 0 : value < 269 ? 1 : 2;

    public void WriteOption(ushort number, scoped ReadOnlySpan<byte> value)
    {
        var delta = number - _lastOption;
        if (delta < 0)
        {
            throw new InvalidOperationException("CoAP options must be written in ascending order");
        }

        _lastOption = number;
        var start = _position++;
        var deltaNibble = WriteExtended(delta);
        var lengthNibble = WriteExtended(value.Length);
        _buffer[start] = (byte)((deltaNibble << 4) | lengthNibble);
        value.CopyTo(_buffer[_position..]);
        _position += value.Length;
    }

    public void WriteUIntOption(ushort number, uint value)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        WriteOption(number, bytes[(4 - UIntLength(value))..]);
    }

    public void WritePayload(scoped ReadOnlySpan<byte> payload)
    {
        if (payload.IsEmpty)
        {
            return;
        }

        _buffer[_position++] = 0xFF;
        payload.CopyTo(_buffer[_position..]);
        _position += payload.Length;
    }

    private int WriteExtended(int value)
    {
        if (value < 13)
        {
            return value;
        }

        if (value < 269)
        {
            _buffer[_position++] = (byte)(value - 13);
            return 13;
        }

        BinaryPrimitives.WriteUInt16BigEndian(_buffer[_position..], (ushort)(value - 269));
        _position += 2;
        return 14;
    }
}

/// <summary>
/// A response the server sends: the options it ever carries, sized and written in option-number order.
/// </summary>
internal ref struct CoapResponse
{
    public CoapMessageType Type;
    public byte Code;
    public ushort MessageId;
    public ReadOnlySpan<byte> Token;
    public uint? Observe;
    public ushort? ContentFormat;
    public CoapBlock? Block2;
    public CoapBlock? Block1;
    public int? Size2;
    public int? Size1;
    public ReadOnlySpan<byte> Payload;

    public readonly int GetSize()
    {
        var size = CoapMessageWriter.HeaderSize(Token);
        var last = 0;
        if (Observe is { } observe)
        {
            size += UIntSize(ref last, CoapOptionNumber.Observe, observe);
        }

        if (ContentFormat is { } format)
        {
            size += UIntSize(ref last, CoapOptionNumber.ContentFormat, format);
        }

        if (Block2 is { } block2)
        {
            size += UIntSize(ref last, CoapOptionNumber.Block2, block2.Encode());
        }

        if (Block1 is { } block1)
        {
            size += UIntSize(ref last, CoapOptionNumber.Block1, block1.Encode());
        }

        if (Size2 is { } size2)
        {
            size += UIntSize(ref last, CoapOptionNumber.Size2, (uint)size2);
        }

        if (Size1 is { } size1)
        {
            size += UIntSize(ref last, CoapOptionNumber.Size1, (uint)size1);
        }

        return size + CoapMessageWriter.PayloadSize(Payload.Length);
    }

    private static int UIntSize(ref int last, ushort number, uint value)
    {
        var size = CoapMessageWriter.OptionSize(number - last, CoapMessageWriter.UIntLength(value));
        last = number;
        return size;
    }

    /// <summary>Writes the response and returns its length; <paramref name="destination"/> must hold <see cref="GetSize"/> bytes.</summary>
    public readonly int WriteTo(Span<byte> destination)
    {
        var w = new CoapMessageWriter(destination, Type, Code, MessageId, Token);
        if (Observe is { } observe)
        {
            w.WriteUIntOption(CoapOptionNumber.Observe, observe);
        }

        if (ContentFormat is { } format)
        {
            w.WriteUIntOption(CoapOptionNumber.ContentFormat, format);
        }

        if (Block2 is { } block2)
        {
            w.WriteUIntOption(CoapOptionNumber.Block2, block2.Encode());
        }

        if (Block1 is { } block1)
        {
            w.WriteUIntOption(CoapOptionNumber.Block1, block1.Encode());
        }

        if (Size2 is { } size2)
        {
            w.WriteUIntOption(CoapOptionNumber.Size2, (uint)size2);
        }

        if (Size1 is { } size1)
        {
            w.WriteUIntOption(CoapOptionNumber.Size1, (uint)size1);
        }

        w.WritePayload(Payload);
        return w.Length;
    }
}
