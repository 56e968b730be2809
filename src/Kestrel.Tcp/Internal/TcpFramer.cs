using System.Buffers;
using System.Text;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// Cuts a TCP byte stream into frames. Kestrel-shaped: on a partial frame <see cref="TryRead"/> returns
/// false and consumes nothing; a violation throws <see cref="TcpFramingException"/>, also consuming
/// nothing. Framers are immutable and shared by all connections of an integration.
/// </summary>
internal abstract class TcpFramer
{
    protected TcpFramer(int maxFrameLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxFrameLength, 1);
        MaxFrameLength = maxFrameLength;
    }

    public int MaxFrameLength { get; }

    /// <summary>Reads one frame. The caller owns AdvanceTo: <c>input.AdvanceTo(reader.Position, ok ? reader.Position : buffer.End)</c>.</summary>
    public abstract bool TryRead(ref SequenceReader<byte> reader, out ReadOnlySequence<byte> frame);

    /// <summary>After <see cref="FramingResync.SkipToDelimiter"/>: advances past the next delimiter (true) or over
    /// every byte that cannot start one (false: call again with more data).</summary>
    public virtual bool TrySkipPastDelimiter(ref SequenceReader<byte> reader)
    {
        reader.AdvanceToEnd();
        return false;
    }

    public static TcpFramer Create(TcpHandlerConfiguration configuration) => configuration.HandlerType switch
    {
        TcpHandlerType.TEXT => DelimiterFramer.FromConfiguration(configuration),
        TcpHandlerType.BINARY => new LengthFieldFramer(
            configuration.MaxFrameLength,
            configuration.LengthFieldOffset,
            configuration.LengthFieldLength,
            configuration.LengthAdjustment,
            configuration.InitialBytesToStrip,
            configuration.ByteOrder == TcpByteOrder.BIG_ENDIAN),
        TcpHandlerType.JSON => new JsonObjectFramer(configuration.MaxFrameLength),
        _ => throw new ArgumentOutOfRangeException(nameof(configuration), configuration.HandlerType, "unknown handlerType"),
    };

    /// <summary>The encoding named by charsetName (UTF-8, US-ASCII, ISO-8859-1, UTF-16 variants; others need a code-page provider).</summary>
    public static Encoding ResolveCharset(string? charsetName) =>
        string.IsNullOrWhiteSpace(charsetName) ? Encoding.UTF8 : Encoding.GetEncoding(charsetName.Trim());
}
