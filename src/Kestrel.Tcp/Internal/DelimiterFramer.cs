using System.Buffers;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// TEXT handler: frames end at a delimiter. Line mode (SYSTEM_LINE_SEPARATOR) ends a frame at <c>\n</c> and
/// treats a preceding <c>\r</c> as part of the delimiter, as Netty's LineBasedFrameDecoder does; NUL and
/// custom separators are matched exactly. <see cref="TcpHandlerConfiguration.MaxFrameLength"/> bounds the
/// frame without its delimiter.
/// </summary>
internal sealed class DelimiterFramer : TcpFramer
{
    private readonly byte[] _delimiter;
    private readonly bool _lineMode;
    private readonly bool _stripDelimiter;

    public DelimiterFramer(int maxFrameLength, ReadOnlySpan<byte> delimiter, bool lineMode, bool stripDelimiter)
        : base(maxFrameLength)
    {
        if (delimiter.IsEmpty)
        {
            throw new ArgumentException("the separator is empty", nameof(delimiter));
        }

        _delimiter = delimiter.ToArray();
        _lineMode = lineMode;
        _stripDelimiter = stripDelimiter;
    }

    public static DelimiterFramer FromConfiguration(TcpHandlerConfiguration c) => c.MessageSeparator switch
    {
        TcpMessageSeparator.SYSTEM_LINE_SEPARATOR => new DelimiterFramer(c.MaxFrameLength, "\n"u8, lineMode: true, c.StripDelimiter),
        TcpMessageSeparator.NUL_DELIMITER => new DelimiterFramer(c.MaxFrameLength, [0], lineMode: false, c.StripDelimiter),
        TcpMessageSeparator.CUSTOM_SEPARATOR => new DelimiterFramer(
            c.MaxFrameLength,
            ResolveCharset(c.CharsetName).GetBytes(string.IsNullOrEmpty(c.CustomSeparator)
                ? throw new ArgumentException("CUSTOM_SEPARATOR needs customSeparator", nameof(c))
                : c.CustomSeparator),
            lineMode: false,
            c.StripDelimiter),
        _ => throw new ArgumentOutOfRangeException(nameof(c), c.MessageSeparator, "unknown messageSeparator"),
    };

    public override bool TryRead(ref SequenceReader<byte> reader, out ReadOnlySequence<byte> frame)
    {
        var probe = reader;
        ReadOnlySequence<byte> body;
        bool found = _delimiter.Length == 1
            ? probe.TryReadTo(out body, _delimiter[0], advancePastDelimiter: true)
            : probe.TryReadTo(out body, _delimiter, advancePastDelimiter: true);
        if (!found)
        {
            // Limits before buffering: the longest prefix of a valid frame is the limit plus all but the
            // last byte of the delimiter (line mode: a trailing '\r').
            long longestPrefix = (long)MaxFrameLength + (_lineMode ? 1 : _delimiter.Length - 1);
            if (reader.Remaining > longestPrefix)
            {
                TcpFramingException.Throw(
                    FramingError.FrameTooLong,
                    $"frame exceeds maxFrameLength {MaxFrameLength} without a separator",
                    FramingResync.SkipToDelimiter);
            }

            frame = default;
            return false;
        }

        long contentLength = body.Length;
        if (_lineMode && contentLength > 0 && EndsWithCarriageReturn(body))
        {
            contentLength--;
        }

        if (contentLength > MaxFrameLength)
        {
            TcpFramingException.Throw(
                FramingError.FrameTooLong,
                $"frame of {contentLength} bytes exceeds maxFrameLength {MaxFrameLength}",
                FramingResync.SkipBytes,
                probe.Consumed - reader.Consumed);
        }

        frame = _stripDelimiter ? body.Slice(0, contentLength) : reader.Sequence.Slice(reader.Position, probe.Position);
        reader = probe;
        return true;
    }

    public override bool TrySkipPastDelimiter(ref SequenceReader<byte> reader)
    {
        bool found = _delimiter.Length == 1
            ? reader.TryAdvanceTo(_delimiter[0], advancePastDelimiter: true)
            : reader.TryReadTo(out ReadOnlySequence<byte> _, _delimiter, advancePastDelimiter: true);
        if (found)
        {
            return true;
        }

        // Keep the bytes that may be the start of a multi-byte delimiter.
        long keep = Math.Min(reader.Remaining, _delimiter.Length - 1);
        reader.Advance(reader.Remaining - keep);
        return false;
    }

    private static bool EndsWithCarriageReturn(ReadOnlySequence<byte> body)
    {
        var last = body.Slice(body.Length - 1);
        return last.FirstSpan[0] == (byte)'\r';
    }
}
