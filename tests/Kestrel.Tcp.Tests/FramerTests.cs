using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Perf.Kestrel.Tcp.Internal;

namespace Perf.Kestrel.Tcp.Tests;

public sealed class FramerTests
{
    private static TcpFramer Text(TcpMessageSeparator separator = TcpMessageSeparator.SYSTEM_LINE_SEPARATOR, bool strip = true, int max = 128, string? custom = null, string charset = "UTF-8") =>
        TcpFramer.Create(new TcpHandlerConfiguration
        {
            HandlerType = TcpHandlerType.TEXT,
            MessageSeparator = separator,
            StripDelimiter = strip,
            MaxFrameLength = max,
            CustomSeparator = custom,
            CharsetName = charset,
        });

    private static TcpFramer Binary(int offset = 0, int length = 2, int adjustment = 0, int strip = 0, bool bigEndian = true, int max = 128) =>
        TcpFramer.Create(new TcpHandlerConfiguration
        {
            HandlerType = TcpHandlerType.BINARY,
            LengthFieldOffset = offset,
            LengthFieldLength = length,
            LengthAdjustment = adjustment,
            InitialBytesToStrip = strip,
            ByteOrder = bigEndian ? TcpByteOrder.BIG_ENDIAN : TcpByteOrder.LITTLE_ENDIAN,
            MaxFrameLength = max,
        });

    private static TcpFramer Json(int max = 128) =>
        TcpFramer.Create(new TcpHandlerConfiguration { HandlerType = TcpHandlerType.JSON, MaxFrameLength = max });

    /// <summary>Reads all frames; returns them and how many bytes were consumed.</summary>
    private static (List<byte[]> Frames, long Consumed) ReadAll(TcpFramer framer, ReadOnlySequence<byte> input)
    {
        var frames = new List<byte[]>();
        var reader = new SequenceReader<byte>(input);
        while (framer.TryRead(ref reader, out var frame))
        {
            frames.Add(frame.ToArray());
        }

        return (frames, reader.Consumed);
    }

    private static void AssertEveryPrefixIsPartial(TcpFramer framer, byte[] wire)
    {
        for (int n = 0; n < wire.Length; n++)
        {
            foreach (var input in new[] { new ReadOnlySequence<byte>(wire, 0, n), Sequences.OneBytePerSegment(wire.AsSpan(0, n)) })
            {
                var reader = new SequenceReader<byte>(input);
                Assert.False(framer.TryRead(ref reader, out _), $"prefix of {n} bytes");
                Assert.Equal(0, reader.Consumed);
            }
        }
    }

    private static string Str(byte[] bytes) => Encoding.UTF8.GetString(bytes);

    [Theory]
    [InlineData("SN-002,default,temperature,25.7\n")]
    [InlineData("SN-002,default,temperature,25.7\r\n")]
    public void LineFramer_ReturnsFalseAndConsumesNothing_ForEveryPrefix(string line) =>
        AssertEveryPrefixIsPartial(Text(), Encoding.UTF8.GetBytes(line));

    [Fact]
    public void LineFramer_SplitsTheSeedsTwoMessages_AndStripsCrLf()
    {
        var wire = "SN-002,default,temperature,25.7\r\nSN-002,default,humidity,69\n"u8.ToArray();
        foreach (var input in new[] { new ReadOnlySequence<byte>(wire), Sequences.OneBytePerSegment(wire) })
        {
            var (frames, consumed) = ReadAll(Text(), input);
            Assert.Equal(["SN-002,default,temperature,25.7", "SN-002,default,humidity,69"], frames.Select(Str));
            Assert.Equal(wire.Length, consumed);
        }
    }

    [Fact]
    public void LineFramer_KeepsTheDelimiter_WhenStripDelimiterIsOff()
    {
        var (frames, _) = ReadAll(Text(strip: false), new ReadOnlySequence<byte>("a\r\nb\n"u8.ToArray()));
        Assert.Equal(["a\r\n", "b\n"], frames.Select(Str));
    }

    [Fact]
    public void NulFramer_SplitsOnZeroBytes()
    {
        var (frames, consumed) = ReadAll(Text(TcpMessageSeparator.NUL_DELIMITER), Sequences.OneBytePerSegment("a,1\0b,2\0c"u8));
        Assert.Equal(["a,1", "b,2"], frames.Select(Str));
        Assert.Equal(8, consumed);
    }

    [Fact]
    public void CustomFramer_MatchesAMultiByteSeparatorAcrossSegments()
    {
        var framer = Text(TcpMessageSeparator.CUSTOM_SEPARATOR, custom: "||");
        var wire = "a|b||c||"u8.ToArray();
        for (int at = 0; at <= wire.Length; at++)
        {
            var (frames, consumed) = ReadAll(framer, Sequences.Split(wire, at));
            Assert.Equal(["a|b", "c"], frames.Select(Str));
            Assert.Equal(wire.Length, consumed);
        }

        AssertEveryPrefixIsPartial(framer, "a|b||"u8.ToArray());
    }

    [Fact]
    public void CustomFramer_EncodesTheSeparatorWithTheCharset()
    {
        var framer = Text(TcpMessageSeparator.CUSTOM_SEPARATOR, custom: "§", charset: "ISO-8859-1");
        var (frames, _) = ReadAll(framer, new ReadOnlySequence<byte>([(byte)'x', 0xA7, (byte)'y', 0xA7]));
        Assert.Equal(["x", "y"], frames.Select(Str));
    }

    [Fact]
    public void LineFramer_AcceptsAFrameOfExactlyMaxFrameLength_WithCrLf()
    {
        var wire = Encoding.ASCII.GetBytes(new string('x', 8) + "\r\n");
        AssertEveryPrefixIsPartial(Text(max: 8), wire);
        var (frames, _) = ReadAll(Text(max: 8), new ReadOnlySequence<byte>(wire));
        Assert.Single(frames);
    }

    [Fact]
    public void LineFramer_RejectsAnOversizedFrame_AndSaysHowToSkipIt()
    {
        var framer = Text(max: 4);
        var ex = Assert.Throws<TcpFramingException>(() => ReadAll(framer, new ReadOnlySequence<byte>("12345\nok\n"u8.ToArray())));
        Assert.Equal(FramingError.FrameTooLong, ex.Reason);
        Assert.Equal(FramingResync.SkipBytes, ex.Resync);
        Assert.Equal(6, ex.SkipLength);
    }

    [Fact]
    public void LineFramer_RejectsAnUnterminatedFrame_AsSoonAsItCannotFit()
    {
        var framer = Text(max: 4);
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>("12345"u8.ToArray()));
        Assert.False(framer.TryRead(ref reader, out _)); // 4 bytes + a possible '\r'
        var ex = Assert.Throws<TcpFramingException>(() => ReadAll(framer, new ReadOnlySequence<byte>("123456"u8.ToArray())));
        Assert.Equal(FramingResync.SkipToDelimiter, ex.Resync);
    }

    [Fact]
    public void DelimiterFramer_SkipsPastTheNextDelimiter_AfterAnOversizedFrame()
    {
        var framer = Text(TcpMessageSeparator.CUSTOM_SEPARATOR, custom: "##");
        var reader = new SequenceReader<byte>(new ReadOnlySequence<byte>("xxxx#"u8.ToArray()));
        Assert.False(framer.TrySkipPastDelimiter(ref reader));
        Assert.Equal(4, reader.Consumed); // keeps the '#' that may start "##"
        reader = new SequenceReader<byte>(new ReadOnlySequence<byte>("##ok##"u8.ToArray()));
        Assert.True(framer.TrySkipPastDelimiter(ref reader));
        Assert.True(framer.TryRead(ref reader, out var frame));
        Assert.Equal("ok", Str(frame.ToArray()));
    }

    private static byte[] LengthPrefixed(byte[] body, int fieldLength, bool bigEndian, byte[]? header = null, int lengthDelta = 0)
    {
        header ??= [];
        var wire = new byte[header.Length + fieldLength + body.Length];
        header.CopyTo(wire, 0);
        long length = body.Length + lengthDelta;
        var field = wire.AsSpan(header.Length, fieldLength);
        Span<byte> eight = stackalloc byte[8];
        if (bigEndian)
        {
            BinaryPrimitives.WriteInt64BigEndian(eight, length);
            eight[(8 - fieldLength)..].CopyTo(field);
        }
        else
        {
            BinaryPrimitives.WriteInt64LittleEndian(eight, length);
            eight[..fieldLength].CopyTo(field);
        }

        body.CopyTo(wire, header.Length + fieldLength);
        return wire;
    }

    [Theory]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(2, false)]
    [InlineData(3, true)]
    [InlineData(3, false)]
    [InlineData(4, true)]
    [InlineData(4, false)]
    [InlineData(8, true)]
    [InlineData(8, false)]
    public void LengthFieldFramer_ReadsEveryFieldWidthAndByteOrder(int fieldLength, bool bigEndian)
    {
        var body = "HELLO, WORLD"u8.ToArray();
        var wire = LengthPrefixed(body, fieldLength, bigEndian);
        var framer = Binary(length: fieldLength, strip: fieldLength, bigEndian: bigEndian);
        AssertEveryPrefixIsPartial(framer, wire);
        var twice = wire.Concat(wire).ToArray();
        var (frames, consumed) = ReadAll(framer, Sequences.OneBytePerSegment(twice));
        Assert.Equal(["HELLO, WORLD", "HELLO, WORLD"], frames.Select(Str));
        Assert.Equal(twice.Length, consumed);
    }

    [Fact]
    public void LengthFieldFramer_KeepsTheHeader_WhenNothingIsStripped()
    {
        var wire = LengthPrefixed("ABC"u8.ToArray(), 2, true);
        var (frames, _) = ReadAll(Binary(), new ReadOnlySequence<byte>(wire));
        Assert.Equal(wire, frames[0]);
    }

    [Fact]
    public void LengthFieldFramer_AppliesOffsetAdjustmentAndStrip_AsNettyDocuments()
    {
        // Netty's javadoc example: HDR1 | Length | HDR2 | Actual Content, length covers the whole message (0x10 = 16 bytes).
        byte[] wire = [0xCA, 0x00, 0x10, 0xFE, .. "HELLO, WORLD"u8];
        var framer = Binary(offset: 1, length: 2, adjustment: -3, strip: 3);
        AssertEveryPrefixIsPartial(framer, wire);
        var (frames, consumed) = ReadAll(framer, new ReadOnlySequence<byte>(wire));
        Assert.Equal([0xFE, .. "HELLO, WORLD"u8], frames[0]);
        Assert.Equal(16, consumed);
    }

    [Fact]
    public void LengthFieldFramer_RejectsAnOversizedFrame_FromItsHeaderAlone()
    {
        var framer = Binary(max: 16);
        var ex = Assert.Throws<TcpFramingException>(() => ReadAll(framer, new ReadOnlySequence<byte>(new byte[] { 0x00, 0x20 })));
        Assert.Equal(FramingError.FrameTooLong, ex.Reason);
        Assert.Equal(FramingResync.SkipBytes, ex.Resync);
        Assert.Equal(0x22, ex.SkipLength);
    }

    [Fact]
    public void LengthFieldFramer_RejectsNegativeAndShortLengths()
    {
        var negative = Assert.Throws<TcpFramingException>(() => ReadAll(Binary(length: 8), new ReadOnlySequence<byte>(new byte[] { 0xFF, 0, 0, 0, 0, 0, 0, 0 })));
        Assert.Equal(FramingError.NegativeLength, negative.Reason);
        var shorter = Assert.Throws<TcpFramingException>(() => ReadAll(Binary(adjustment: -5), new ReadOnlySequence<byte>(new byte[] { 0x00, 0x01, 0x00 })));
        Assert.Equal(FramingError.LengthShorterThanHeader, shorter.Reason);
        var strip = Assert.Throws<TcpFramingException>(() => ReadAll(Binary(strip: 5), new ReadOnlySequence<byte>(new byte[] { 0x00, 0x01, 0x00 })));
        Assert.Equal(FramingError.StripLongerThanFrame, strip.Reason);
    }

    [Fact]
    public void JsonFramer_ReturnsFalseAndConsumesNothing_ForEveryPrefix() =>
        AssertEveryPrefixIsPartial(Json(), """{"deviceName":"a}{\"","telemetry":{"t":[1,{"x":"]"}]}}"""u8.ToArray());

    [Fact]
    public void JsonFramer_FramesConsecutiveObjects_HonoringStringsAndEscapes()
    {
        var wire = """ {"a":"}\\"} {"b":[{"c":"\"{"}]}[1,2]"""u8.ToArray();
        foreach (var input in new[] { new ReadOnlySequence<byte>(wire), Sequences.OneBytePerSegment(wire) })
        {
            var (frames, consumed) = ReadAll(Json(), input);
            Assert.Equal(["""{"a":"}\\"}""", """{"b":[{"c":"\"{"}]}""", "[1,2]"], frames.Select(Str));
            Assert.Equal(wire.Length, consumed);
        }
    }

    [Fact]
    public void JsonFramer_RejectsAnOversizedObject_AndNonJson()
    {
        Assert.Equal(FramingError.FrameTooLong, Assert.Throws<TcpFramingException>(() => ReadAll(Json(max: 8), new ReadOnlySequence<byte>("""{"abc":"defg"}"""u8.ToArray()))).Reason);
        Assert.Equal(FramingError.InvalidJson, Assert.Throws<TcpFramingException>(() => ReadAll(Json(), new ReadOnlySequence<byte>("x{}"u8.ToArray()))).Reason);
    }

    [Fact]
    public void EveryFramer_ReadsFramesWithoutAllocating()
    {
        var cases = new (TcpFramer Framer, byte[] Frame)[]
        {
            (Text(), "SN-002,default,temperature,25.7\r\n"u8.ToArray()),
            (Text(TcpMessageSeparator.CUSTOM_SEPARATOR, custom: "||"), "SN-002,default,temperature,25.7||"u8.ToArray()),
            (Binary(strip: 2), LengthPrefixed("SN-002,default,temperature,25.7"u8.ToArray(), 2, true)),
            (Json(), """{"deviceName":"SN-002","telemetry":{"t":"}"}}"""u8.ToArray()),
        };
        foreach (var (framer, frame) in cases)
        {
            var input = Sequences.OneBytePerSegment([.. frame, .. frame, .. frame]);
            ReadAll(framer, input);
            long before = GC.GetAllocatedBytesForCurrentThread();
            var reader = new SequenceReader<byte>(input);
            int frames = 0;
            while (framer.TryRead(ref reader, out _))
            {
                frames++;
            }

            Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
            Assert.Equal(3, frames);
        }
    }
}
