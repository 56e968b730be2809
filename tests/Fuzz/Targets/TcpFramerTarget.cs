using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Perf.Fuzz.Harness;
using Perf.Kestrel.Tcp.Internal;

namespace Perf.Fuzz.Targets;

/// <summary>
/// TCP integration framers (TEXT delimiter, BINARY length field, JSON) driven by the same read loop as
/// <c>TcpConnection.ProcessBuffer</c>, including the drop-and-resync path for oversized frames and the
/// last unterminated line at EOF. The first input byte picks one of <see cref="Variants"/>, bit 0 of the
/// second picks dropOversizedFrames; the rest is the stream. Invariants: only
/// <see cref="TcpFramingException"/> escapes a framer; every segmentation yields the same frames and the
/// same outcome; no frame exceeds maxFrameLength; a stripped delimiter never appears inside a frame;
/// a JSON frame is one balanced object or array.
/// </summary>
internal sealed class TcpFramerTarget : FuzzTarget
{
    internal sealed record Variant(string Name, Func<TcpFramer> Create, int Allowance, byte[]? StrippedDelimiter, bool Json = false);

    internal static readonly Variant[] Variants =
    [
        new("line-strip", () => new DelimiterFramer(64, "\n"u8, lineMode: true, stripDelimiter: true), 0, "\n"u8.ToArray()),
        new("line-keep", () => new DelimiterFramer(64, "\n"u8, lineMode: true, stripDelimiter: false), 2, null),
        new("nul-strip", () => new DelimiterFramer(64, [0], lineMode: false, stripDelimiter: true), 0, [0]),
        new("custom-2-strip", () => new DelimiterFramer(64, "##"u8, lineMode: false, stripDelimiter: true), 0, "##"u8.ToArray()),
        new("custom-4-keep", () => new DelimiterFramer(32, "\r\n\r\n"u8, lineMode: false, stripDelimiter: false), 4, null),
        new("length-2be", () => new LengthFieldFramer(128, 0, 2, 0, 2, bigEndian: true), 0, null),
        new("length-4le-inclusive", () => new LengthFieldFramer(256, 2, 4, -6, 0, bigEndian: false), 0, null),
        new("length-1", () => new LengthFieldFramer(64, 0, 1, 0, 1, bigEndian: true), 0, null),
        new("length-3be-adjusted", () => new LengthFieldFramer(100, 1, 3, 2, 4, bigEndian: true), 0, null),
        new("length-8be", () => new LengthFieldFramer(128, 0, 8, 0, 8, bigEndian: true), 0, null),
        new("length-2le-strip-past", () => new LengthFieldFramer(64, 0, 2, -2, 6, bigEndian: false), 0, null),
        new("json-128", () => new JsonObjectFramer(128), 0, null, Json: true),
        new("json-1024", () => new JsonObjectFramer(1024), 0, null, Json: true),
    ];

    public override string Name => "tcp";

    public override string Description => "DelimiterFramer, LengthFieldFramer, JsonObjectFramer in TcpConnection's read loop (resync, EOF line)";

    public override IReadOnlyList<byte[]> Dictionary { get; } =
    [
        "\n"u8.ToArray(), "\r\n"u8.ToArray(), [0], "##"u8.ToArray(), "#"u8.ToArray(), "\r\n\r\n"u8.ToArray(), "{"u8.ToArray(), "}"u8.ToArray(), "["u8.ToArray(),
        "]"u8.ToArray(), "\""u8.ToArray(), "\\"u8.ToArray(), "\\\""u8.ToArray(), "{\"a\":[1,{\"b\":\"}\"}]}"u8.ToArray(), [0xFF, 0xFF], [0x7F, 0xFF, 0xFF, 0xFF],
        [0x80, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0],
    ];

    public override ulong Run(ReadOnlySpan<byte> input)
    {
        if (input.Length < 2)
        {
            return 0;
        }

        var variant = Variants[input[0] % Variants.Length];
        bool dropOversized = (input[1] & 1) != 0;
        var stream = input[2..].ToArray();
        var framer = variant.Create();
        string? reference = null;
        var signature = new Signature();
        signature.Add((ulong)(input[0] % Variants.Length));
        foreach (var (plan, cuts) in Segmenter.Plans(stream))
        {
            var loop = new ReadLoop(framer, variant, dropOversized);
            long left = StreamFeeder.Feed(stream, cuts, loop.Process);
            string outcome = $"{string.Join("\n", loop.Frames)}\nclosed={loop.Closed?.ToString() ?? "no"} dropped={string.Join(",", loop.Dropped)} left={left}";
            if (reference is null)
            {
                reference = outcome;
                signature.Add((ulong)Math.Min(loop.Frames.Count, 4));
                signature.Add((ulong)(loop.Closed ?? 0));
                foreach (var d in loop.Dropped.Distinct())
                {
                    signature.Add(100 + (ulong)d);
                }
            }
            else if (reference != outcome)
            {
                throw new FuzzInvariantException($"{variant.Name} (drop={dropOversized}) read as '{plan}' frames differently than as one read:\n--- whole\n{reference}\n--- {plan}\n{outcome}");
            }
        }

        return signature.Value;
    }

    /// <summary>TcpConnection.ProcessBuffer's loop, recording frames instead of converting them.</summary>
    private sealed class ReadLoop(TcpFramer framer, Variant variant, bool dropOversized)
    {
        private long _discardBytes;
        private bool _discardToDelimiter;

        public List<string> Frames { get; } = [];
        public List<FramingError> Dropped { get; } = [];
        public FramingError? Closed { get; private set; }

        public long Process(ReadOnlySequence<byte> buffer, bool end)
        {
            if (Closed is not null)
            {
                return 0;
            }

            var reader = new SequenceReader<byte>(buffer);
            try
            {
                while (!reader.End)
                {
                    if (_discardBytes > 0)
                    {
                        long skip = Math.Min(_discardBytes, reader.Remaining);
                        reader.Advance(skip);
                        _discardBytes -= skip;
                        continue;
                    }

                    if (_discardToDelimiter)
                    {
                        if (!framer.TrySkipPastDelimiter(ref reader))
                        {
                            break;
                        }

                        _discardToDelimiter = false;
                        continue;
                    }

                    ReadOnlySequence<byte> frame;
                    try
                    {
                        var before = reader.Consumed;
                        if (!framer.TryRead(ref reader, out frame))
                        {
                            FuzzInvariantException.Check(reader.Consumed == before, "TryRead returned false but consumed bytes");
                            break;
                        }
                    }
                    catch (TcpFramingException ex) when (ex.Resync != FramingResync.Close && dropOversized)
                    {
                        FuzzInvariantException.Check(ex.Resync != FramingResync.SkipBytes || ex.SkipLength > 0, $"SkipBytes with length {ex.SkipLength}");
                        Dropped.Add(ex.Reason);
                        _discardBytes = ex.Resync == FramingResync.SkipBytes ? ex.SkipLength : 0;
                        _discardToDelimiter = ex.Resync == FramingResync.SkipToDelimiter;
                        continue;
                    }

                    OnFrame(frame);
                }

                if (end && !reader.End && !_discardToDelimiter && _discardBytes == 0 && framer is DelimiterFramer && reader.Remaining <= framer.MaxFrameLength)
                {
                    var rest = reader.UnreadSequence;
                    reader.AdvanceToEnd();
                    OnFrame(rest);
                }
            }
            catch (TcpFramingException ex)
            {
                Closed = ex.Reason;
            }

            return reader.Consumed;
        }

        private void OnFrame(ReadOnlySequence<byte> frame)
        {
            var bytes = frame.ToArray();
            FuzzInvariantException.Check(bytes.Length <= framer.MaxFrameLength + variant.Allowance,
                $"{variant.Name}: a frame of {bytes.Length} bytes passed maxFrameLength {framer.MaxFrameLength}");
            if (variant.StrippedDelimiter is { } delimiter)
            {
                FuzzInvariantException.Check(bytes.AsSpan().IndexOf(delimiter) < 0, $"{variant.Name}: the delimiter is inside frame {Convert.ToHexString(bytes)}");
            }

            if (variant.Json)
            {
                FuzzInvariantException.Check(bytes.Length >= 2 && bytes[0] is (byte)'{' or (byte)'[' && bytes[^1] is (byte)'}' or (byte)']',
                    $"{variant.Name}: frame is not one object or array: {Convert.ToHexString(bytes)}");
            }

            Frames.Add(Convert.ToHexString(bytes));
        }
    }

    public override IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        static byte[] Seed(string variant, bool drop, byte[] stream)
        {
            int index = Array.FindIndex(Variants, v => v.Name == variant);
            return [(byte)index, drop ? (byte)1 : (byte)0, .. stream];
        }

        static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

        static byte[] Length2(string body, bool bigEndian)
        {
            var b = Utf8(body);
            var head = new byte[2];
            if (bigEndian)
            {
                BinaryPrimitives.WriteUInt16BigEndian(head, (ushort)b.Length);
            }
            else
            {
                BinaryPrimitives.WriteUInt16LittleEndian(head, (ushort)b.Length);
            }

            return [.. head, .. b];
        }

        yield return ("line-strip", Seed("line-strip", false, Utf8("SN-001,25.4,60\r\n{\"temperature\":25}\n\nSN-002,19.0,55\nlast-line-without-newline")));
        yield return ("line-keep-drop", Seed("line-keep", true, Utf8("SN-001,25.4\n" + new string('x', 80) + "\nSN-003,1\n")));
        yield return ("nul", Seed("nul-strip", true, Utf8("{\"deviceName\":\"Device A\",\"temperature\":21}\0{\"deviceName\":\"Device B\"}\0")));
        yield return ("custom-2", Seed("custom-2-strip", true, Utf8("a=1,b=2##c=3##" + new string('y', 70) + "##tail#")));
        yield return ("custom-4", Seed("custom-4-keep", false, Utf8("GET / HTTP/1.0\r\n\r\nsecond\r\n\r\n")));
        yield return ("length-2be", Seed("length-2be", true, [.. Length2("{\"temperature\":25}", true), .. Length2("SN-001,25.4", true), 0x0F, 0xFF, 0x00]));
        yield return ("length-4le", Seed("length-4le-inclusive", false, [0xCA, 0xFE, 10, 0, 0, 0, 1, 2, 3, 4, 0xCA, 0xFE, 6, 0, 0, 0]));
        yield return ("length-1", Seed("length-1", true, [3, 1, 2, 3, 0, 200, 9, 9]));
        yield return ("length-3be", Seed("length-3be-adjusted", false, [0xAA, 0, 0, 3, 1, 2, 3, 4, 5]));
        yield return ("length-8be", Seed("length-8be", true, [0, 0, 0, 0, 0, 0, 0, 4, .. "ping"u8, 0xFF, 0, 0, 0, 0, 0, 0, 1]));
        yield return ("length-strip-past", Seed("length-2le-strip-past", false, [10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 2, 0]));
        yield return ("json", Seed("json-128", false, Utf8("{\"deviceName\":\"A\",\"telemetry\":{\"t\":1}} [{\"x\":\"}]\\\"\"}]\n{\"open\":")));
        yield return ("json-big", Seed("json-1024", false, Utf8("{\"deviceName\":\"Device A\",\"deviceType\":\"thermostat\",\"telemetry\":[{\"ts\":1,\"values\":{\"t\":[1,2,{\"a\":null}]}}]}")));
    }
}
