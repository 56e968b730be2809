using System.Buffers;
using System.Buffers.Binary;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// BINARY handler with Netty LengthFieldBasedFrameDecoder semantics: the length field sits at
/// lengthFieldOffset (1, 2, 3, 4 or 8 bytes, either byte order); the frame spans
/// <c>lengthFieldOffset + lengthFieldLength + length + lengthAdjustment</c> bytes, of which the first
/// initialBytesToStrip are dropped. The limit is checked on the decoded length, before any body is buffered.
/// </summary>
internal sealed class LengthFieldFramer : TcpFramer
{
    private readonly int _offset;
    private readonly int _fieldLength;
    private readonly int _adjustment;
    private readonly int _strip;
    private readonly bool _bigEndian;
    private readonly int _fieldEnd;

    public LengthFieldFramer(int maxFrameLength, int lengthFieldOffset, int lengthFieldLength, int lengthAdjustment, int initialBytesToStrip, bool bigEndian)
        : base(maxFrameLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(lengthFieldOffset);
        ArgumentOutOfRangeException.ThrowIfNegative(initialBytesToStrip);
        if (lengthFieldLength is not (1 or 2 or 3 or 4 or 8))
        {
            throw new ArgumentOutOfRangeException(nameof(lengthFieldLength), lengthFieldLength, "lengthFieldLength must be 1, 2, 3, 4 or 8");
        }

        if (lengthFieldOffset > maxFrameLength - lengthFieldLength)
        {
            throw new ArgumentOutOfRangeException(nameof(lengthFieldOffset), lengthFieldOffset, "the length field does not fit in maxFrameLength");
        }

        _offset = lengthFieldOffset;
        _fieldLength = lengthFieldLength;
        _adjustment = lengthAdjustment;
        _strip = initialBytesToStrip;
        _bigEndian = bigEndian;
        _fieldEnd = lengthFieldOffset + lengthFieldLength;
    }

    public override bool TryRead(ref SequenceReader<byte> reader, out ReadOnlySequence<byte> frame)
    {
        frame = default;
        if (reader.Remaining < _fieldEnd)
        {
            return false;
        }

        Span<byte> field = stackalloc byte[8];
        var probe = reader;
        probe.Advance(_offset);
        probe.TryCopyTo(field[.._fieldLength]);

        long length = ReadLength(field[.._fieldLength]);
        if (length < 0)
        {
            TcpFramingException.Throw(FramingError.NegativeLength, $"negative length field {length}");
        }

        long frameLength = length + _adjustment + _fieldEnd;
        if (frameLength < _fieldEnd)
        {
            TcpFramingException.Throw(FramingError.LengthShorterThanHeader, $"adjusted frame length {frameLength} is less than lengthFieldEndOffset {_fieldEnd}");
        }

        if (frameLength > MaxFrameLength)
        {
            TcpFramingException.Throw(
                FramingError.FrameTooLong,
                $"frame of {frameLength} bytes exceeds maxFrameLength {MaxFrameLength}",
                FramingResync.SkipBytes,
                frameLength);
        }

        if (reader.Remaining < frameLength)
        {
            return false;
        }

        if (_strip > frameLength)
        {
            TcpFramingException.Throw(FramingError.StripLongerThanFrame, $"initialBytesToStrip {_strip} exceeds frame length {frameLength}");
        }

        var whole = reader.UnreadSequence.Slice(0, frameLength);
        frame = whole.Slice(_strip);
        reader.Advance(frameLength);
        return true;
    }

    private long ReadLength(ReadOnlySpan<byte> field) => (_fieldLength, _bigEndian) switch
    {
        (1, _) => field[0],
        (2, true) => BinaryPrimitives.ReadUInt16BigEndian(field),
        (2, false) => BinaryPrimitives.ReadUInt16LittleEndian(field),
        (3, true) => (field[0] << 16) | (field[1] << 8) | field[2],
        (3, false) => field[0] | (field[1] << 8) | (field[2] << 16),
        (4, true) => BinaryPrimitives.ReadUInt32BigEndian(field),
        (4, false) => BinaryPrimitives.ReadUInt32LittleEndian(field),
        (_, true) => BinaryPrimitives.ReadInt64BigEndian(field),
        (_, false) => BinaryPrimitives.ReadInt64LittleEndian(field),
    };
}
