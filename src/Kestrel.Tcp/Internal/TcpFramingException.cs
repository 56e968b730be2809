using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>Why a byte stream could not be framed.</summary>
internal enum FramingError : byte
{
    /// <summary>A frame is longer than maxFrameLength.</summary>
    FrameTooLong = 1,

    /// <summary>A length field decodes to a negative length (8-byte fields beyond long.MaxValue).</summary>
    NegativeLength,

    /// <summary>The adjusted length is shorter than the length field's own end.</summary>
    LengthShorterThanHeader,

    /// <summary>initialBytesToStrip is larger than the frame.</summary>
    StripLongerThanFrame,

    /// <summary>JSON handler: the stream does not start an object or array.</summary>
    InvalidJson,
}

/// <summary>How the handler may continue after a framing error on the same connection.</summary>
internal enum FramingResync : byte
{
    /// <summary>The stream cannot be resynchronized: close the connection.</summary>
    Close = 0,

    /// <summary>Skip exactly <see cref="TcpFramingException.SkipLength"/> bytes (the oversized frame).</summary>
    SkipBytes,

    /// <summary>Skip up to and including the next delimiter.</summary>
    SkipToDelimiter,
}

/// <summary>A protocol violation in the byte stream. Thrown only through <see cref="Throw"/>.</summary>
internal sealed class TcpFramingException : Exception
{
    private TcpFramingException(FramingError reason, string message, FramingResync resync, long skipLength)
        : base(message)
    {
        Reason = reason;
        Resync = resync;
        SkipLength = skipLength;
    }

    public FramingError Reason { get; }
    public FramingResync Resync { get; }
    public long SkipLength { get; }

    [DoesNotReturn, StackTraceHidden]
    public static void Throw(FramingError reason, string message, FramingResync resync = FramingResync.Close, long skipLength = 0) =>
        throw new TcpFramingException(reason, message, resync, skipLength);
}
