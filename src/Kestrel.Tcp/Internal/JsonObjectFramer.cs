using System.Buffers;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// JSON handler: one top-level JSON object (or array) per frame, found by matching braces and brackets
/// outside strings (escapes honored), like Netty's JsonObjectDecoder. Whitespace between values is
/// skipped. A partial value is rescanned on the next read; the scan is bounded by maxFrameLength.
/// An oversized value cannot be resynchronized and closes the connection.
/// </summary>
internal sealed class JsonObjectFramer : TcpFramer
{
    public JsonObjectFramer(int maxFrameLength)
        : base(maxFrameLength)
    {
    }

    public override bool TryRead(ref SequenceReader<byte> reader, out ReadOnlySequence<byte> frame)
    {
        frame = default;
        var probe = reader;
        long start = -1;
        int depth = 0;
        bool inString = false;
        bool escaped = false;
        long index = 0;
        while (!probe.End)
        {
            var span = probe.UnreadSpan;
            for (int i = 0; i < span.Length; i++, index++)
            {
                if (index >= MaxFrameLength)
                {
                    TcpFramingException.Throw(FramingError.FrameTooLong, $"JSON value exceeds maxFrameLength {MaxFrameLength}");
                }

                byte b = span[i];
                if (start < 0)
                {
                    if (b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
                    {
                        continue;
                    }

                    if (b is not ((byte)'{' or (byte)'['))
                    {
                        TcpFramingException.Throw(FramingError.InvalidJson, $"unexpected byte 0x{b:X2} where a JSON object starts");
                    }

                    start = index;
                    depth = 1;
                    continue;
                }

                if (inString)
                {
                    if (escaped)
                    {
                        escaped = false;
                    }
                    else if (b == (byte)'\\')
                    {
                        escaped = true;
                    }
                    else if (b == (byte)'"')
                    {
                        inString = false;
                    }

                    continue;
                }

                switch (b)
                {
                    case (byte)'"':
                        inString = true;
                        break;
                    case (byte)'{' or (byte)'[':
                        depth++;
                        break;
                    case (byte)'}' or (byte)']':
                        if (--depth == 0)
                        {
                            frame = reader.UnreadSequence.Slice(start, index + 1 - start);
                            reader.Advance(index + 1);
                            return true;
                        }

                        break;
                }
            }

            probe.Advance(span.Length);
        }

        return false;
    }
}
