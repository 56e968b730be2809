using System.Text;
using Perf.Coap.Internal;

namespace Perf.Coap.Tests;

public sealed class CoapCodecTests
{
    private static byte[] Message(CoapMessageType type, byte code, ushort id, byte[] token, Action<CoapTestWriter>? options = null, byte[]? payload = null)
    {
        var w = new CoapTestWriter(type, code, id, token);
        options?.Invoke(w);
        return w.Finish(payload ?? []);
    }

    [Theory]
    [InlineData(CoapMessageType.Confirmable, 0)]
    [InlineData(CoapMessageType.NonConfirmable, 1)]
    [InlineData(CoapMessageType.Acknowledgement, 4)]
    [InlineData(CoapMessageType.Reset, 8)]
    public void Header_RoundTrips_TypeCodeIdAndToken(object typeValue, int tokenLength)
    {
        var type = (CoapMessageType)typeValue;
        var token = Enumerable.Range(1, tokenLength).Select(i => (byte)i).ToArray();
        var bytes = Message(type, CoapCode.Post, 0xBEEF, token, payload: "x"u8.ToArray());
        var reader = new CoapMessageReader(bytes);
        Assert.Equal(type, reader.Type);
        Assert.Equal(CoapCode.Post, reader.Code);
        Assert.Equal(0xBEEF, reader.MessageId);
        Assert.Equal(token, reader.Token.ToArray());
        Assert.Equal("x"u8.ToArray(), reader.Payload.ToArray());
    }

    [Fact]
    public void EmptyConfirmable_IsThePingOfSection4_3()
    {
        var reader = new CoapMessageReader([0x40, 0x00, 0x12, 0x34]);
        Assert.True(reader.IsEmpty);
        Assert.Equal(CoapMessageType.Confirmable, reader.Type);
        Assert.Equal(0x1234, reader.MessageId);
    }

    // Delta and length each cover the three encodings of RFC 7252 §3.1: inline (0-12), one extra byte
    // (13-268) and two extra bytes (269-65804), at both edges of every class.
    public static TheoryData<int, int> DeltaAndLengthClasses()
    {
        var data = new TheoryData<int, int>();
        foreach (var delta in new[] { 0, 1, 12, 13, 14, 268, 269, 270, 1000, 65000 })
        {
            foreach (var length in new[] { 0, 1, 12, 13, 268, 269, 300 })
            {
                data.Add(delta, length);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(DeltaAndLengthClasses))]
    public void Option_RoundTrips_ForEveryDeltaAndLengthEncoding(int delta, int length)
    {
        var value = Enumerable.Range(0, length).Select(i => (byte)(i * 7)).ToArray();
        var bytes = Message(CoapMessageType.Confirmable, CoapCode.Get, 1, [], w => w.Option((ushort)delta, value), "p"u8.ToArray());
        Assert.Equal(4 + CoapMessageWriter.OptionSize(delta, length) + 2, bytes.Length);

        var reader = new CoapMessageReader(bytes);
        var options = reader.Options;
        Assert.True(options.MoveNext());
        Assert.Equal(delta, options.Current.Number);
        Assert.Equal(value, options.Current.Value.ToArray());
        Assert.False(options.MoveNext());
        Assert.Equal("p"u8.ToArray(), reader.Payload.ToArray());
    }

    [Theory]
    [InlineData(12, 0, new byte[] { 0xC0 })]
    [InlineData(13, 0, new byte[] { 0xD0, 0x00 })]
    [InlineData(268, 0, new byte[] { 0xD0, 0xFF })]
    [InlineData(269, 0, new byte[] { 0xE0, 0x00, 0x00 })]
    [InlineData(0, 13, new byte[] { 0x0D, 0x00 })]
    [InlineData(0, 269, new byte[] { 0x0E, 0x00, 0x00 })]
    public void OptionHeader_UsesTheExtendedFormsOfSection3_1(int delta, int length, byte[] expectedPrefix)
    {
        var bytes = Message(CoapMessageType.Confirmable, CoapCode.Get, 1, [], w => w.Option((ushort)delta, new byte[length]));
        Assert.Equal(expectedPrefix, bytes.AsSpan(4, expectedPrefix.Length).ToArray());
    }

    [Fact]
    public void Options_AreDeltaEncoded_AndRepeatedOptionsUseDeltaZero()
    {
        var bytes = Message(CoapMessageType.Confirmable, CoapCode.Post, 7, [0xAA], w =>
        {
            w.Option(CoapOptionNumber.UriPath, "api"u8);
            w.Option(CoapOptionNumber.UriPath, "v1"u8);
            w.UInt(CoapOptionNumber.ContentFormat, CoapContentFormat.Json);
            w.Option(CoapOptionNumber.UriQuery, "a=1"u8);
            w.UInt(CoapOptionNumber.Size1, 70000);
        });
        // Uri-Path 11 "api": delta 11, length 3; then delta 0 for the repeat; Content-Format 50 is one byte.
        Assert.Equal(new byte[] { 0xB3, (byte)'a', (byte)'p', (byte)'i', 0x02, (byte)'v', (byte)'1', 0x11, 50 }, bytes.AsSpan(5, 9).ToArray());

        var found = new List<(ushort, string)>();
        foreach (var o in new CoapMessageReader(bytes).Options)
        {
            found.Add((o.Number, o.Number is CoapOptionNumber.ContentFormat or CoapOptionNumber.Size1 ? o.GetUInt().ToString() : Encoding.ASCII.GetString(o.Value)));
        }

        Assert.Equal([(11, "api"), (11, "v1"), (12, "50"), (15, "a=1"), (60, "70000")], found);
    }

    [Theory]
    [InlineData(0u, 0)]
    [InlineData(1u, 1)]
    [InlineData(255u, 1)]
    [InlineData(256u, 2)]
    [InlineData(0xFFFFu, 2)]
    [InlineData(0x10000u, 3)]
    [InlineData(0xFFFFFFu, 3)]
    [InlineData(0x1000000u, 4)]
    [InlineData(uint.MaxValue, 4)]
    public void UIntOption_DropsLeadingZeroBytes_AndRoundTrips(uint value, int length)
    {
        Assert.Equal(length, CoapMessageWriter.UIntLength(value));
        var bytes = Message(CoapMessageType.Confirmable, CoapCode.Get, 1, [], w => w.UInt(CoapOptionNumber.Observe, value));
        var options = new CoapMessageReader(bytes).Options;
        Assert.True(options.MoveNext());
        Assert.Equal(length, options.Current.Value.Length);
        Assert.Equal(value, options.Current.GetUInt());
    }

    [Theory]
    [InlineData(0, false, 0, 16)]
    [InlineData(1, true, 2, 64)]
    [InlineData(1000, false, 6, 1024)]
    [InlineData(0xFFFFF, true, 4, 256)]
    public void BlockOption_EncodesNumMoreAndSizeExponent(int number, bool more, int szx, int size)
    {
        var block = new CoapBlock(number, more, szx);
        Assert.Equal(size, block.Size);
        Assert.True(CoapBlock.TryDecode(block.Encode(), out var decoded));
        Assert.Equal(block, decoded);
        Assert.Equal(number * size, decoded.Offset);
    }

    [Fact]
    public void BlockOption_RejectsTheReservedSizeExponent7()
    {
        Assert.False(CoapBlock.TryDecode(0x17, out _));
        Assert.Equal(6, CoapBlock.ExponentFor(1024));
        Assert.Equal(6, CoapBlock.ExponentFor(4096));
        Assert.Equal(0, CoapBlock.ExponentFor(16));
    }

    [Theory]
    [InlineData(new byte[] { 0x40, 0x01, 0x00 }, CoapFormatError.TooShort)]
    [InlineData(new byte[] { 0x80, 0x01, 0x00, 0x01 }, CoapFormatError.UnknownVersion)]
    [InlineData(new byte[] { 0x49, 0x01, 0x00, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, CoapFormatError.TokenLengthReserved)]
    [InlineData(new byte[] { 0x44, 0x01, 0x00, 0x01, 1, 2 }, CoapFormatError.TruncatedToken)]
    [InlineData(new byte[] { 0x40, 0x01, 0x00, 0x01, 0xF1, 0x00 }, CoapFormatError.ReservedOptionNibble)]
    [InlineData(new byte[] { 0x40, 0x01, 0x00, 0x01, 0x1F, 0x00 }, CoapFormatError.ReservedOptionNibble)]
    [InlineData(new byte[] { 0x40, 0x01, 0x00, 0x01, 0xD1 }, CoapFormatError.TruncatedOption)]
    [InlineData(new byte[] { 0x40, 0x01, 0x00, 0x01, 0xE1, 0x00 }, CoapFormatError.TruncatedOption)]
    [InlineData(new byte[] { 0x40, 0x01, 0x00, 0x01, 0xB3, (byte)'a' }, CoapFormatError.TruncatedOption)]
    [InlineData(new byte[] { 0x40, 0x01, 0x00, 0x01, 0xFF }, CoapFormatError.EmptyPayloadAfterMarker)]
    [InlineData(new byte[] { 0x40, 0x00, 0x00, 0x01, 0x00 }, CoapFormatError.EmptyMessageNotEmpty)]
    [InlineData(new byte[] { 0x41, 0x00, 0x00, 0x01, 0x05 }, CoapFormatError.EmptyMessageNotEmpty)]
    public void Malformed_Throws_WithTheReason(byte[] datagram, object reason)
    {
        var ex = Assert.Throws<CoapFormatException>(() => new CoapMessageReader(datagram));
        Assert.Equal(reason, ex.Reason);
    }

    [Fact]
    public void OptionNumbers_BeyondSixteenBits_AreMalformed()
    {
        // Two options of delta 65000: the second pushes the number past 65535.
        var bytes = Message(CoapMessageType.Confirmable, CoapCode.Get, 1, [], w =>
        {
            w.Option(65000, []);
        });
        var doubled = bytes.Concat(bytes[4..]).ToArray();
        Assert.Equal(CoapFormatError.OptionNumberOverflow, Assert.Throws<CoapFormatException>(() => new CoapMessageReader(doubled)).Reason);
    }

    [Fact]
    public void EveryTruncation_OfAMessage_ParsesOrThrowsFormatError_NeverAnythingElse()
    {
        var bytes = Message(CoapMessageType.Confirmable, CoapCode.Post, 9, [1, 2, 3], w =>
        {
            w.Option(CoapOptionNumber.UriPath, "api"u8);
            w.Option(CoapOptionNumber.UriQuery, new byte[300]);
            w.UInt(CoapOptionNumber.Block1, new CoapBlock(3, true, 6).Encode());
        }, "{\"a\":1}"u8.ToArray());
        for (var length = 0; length <= bytes.Length; length++)
        {
            try
            {
                var reader = new CoapMessageReader(bytes.AsSpan(0, length));
                foreach (var o in reader.Options)
                {
                    _ = o.Number;
                }
            }
            catch (CoapFormatException)
            {
                // expected for most prefixes
            }
        }
    }

    [Fact]
    public void RandomGarbage_OnlyEverThrowsFormatErrors()
    {
        var random = new Random(7252);
        var buffer = new byte[64];
        for (var i = 0; i < 50_000; i++)
        {
            var length = random.Next(buffer.Length);
            random.NextBytes(buffer.AsSpan(0, length));
            buffer[0] = (byte)((buffer[0] & 0x3F) | 0x40); // version 1, so the option parser is exercised
            try
            {
                var reader = new CoapMessageReader(buffer.AsSpan(0, length));
                _ = CoapRequest.Read(reader);
            }
            catch (CoapFormatException)
            {
            }
        }
    }

    [Fact]
    public void Response_GetSize_EqualsWrittenLength_AndReadsBack()
    {
        var payload = new byte[700];
        var response = new CoapResponse
        {
            Type = CoapMessageType.Acknowledgement,
            Code = CoapCode.Content,
            MessageId = 0x0102,
            Token = [9, 8, 7, 6],
            Observe = 70000,
            ContentFormat = CoapContentFormat.Json,
            Block2 = new CoapBlock(2, true, 5),
            Block1 = new CoapBlock(1, false, 6),
            Size2 = 5000,
            Size1 = 1_048_576,
            Payload = payload,
        };
        var buffer = new byte[response.GetSize()];
        Assert.Equal(buffer.Length, response.WriteTo(buffer));

        var reader = new CoapMessageReader(buffer);
        Assert.Equal(CoapMessageType.Acknowledgement, reader.Type);
        Assert.Equal([9, 8, 7, 6], reader.Token.ToArray());
        var options = new Dictionary<ushort, uint>();
        foreach (var o in reader.Options)
        {
            options[o.Number] = o.GetUInt();
        }

        Assert.Equal(70000u, options[CoapOptionNumber.Observe]);
        Assert.Equal(50u, options[CoapOptionNumber.ContentFormat]);
        Assert.Equal(new CoapBlock(2, true, 5).Encode(), options[CoapOptionNumber.Block2]);
        Assert.Equal(new CoapBlock(1, false, 6).Encode(), options[CoapOptionNumber.Block1]);
        Assert.Equal(5000u, options[CoapOptionNumber.Size2]);
        Assert.Equal(1_048_576u, options[CoapOptionNumber.Size1]);
        Assert.Equal(700, reader.Payload.Length);
    }

    [Theory]
    [InlineData("api/v1/TOKEN/telemetry", CoapResource.Telemetry)]
    [InlineData("api/v1/TOKEN/attributes", CoapResource.Attributes)]
    [InlineData("api/v1/TOKEN/rpc", CoapResource.Rpc)]
    [InlineData("api/v1/TOKEN/rpc/42", CoapResource.RpcReply)]
    [InlineData("api/v1/TOKEN/claim", CoapResource.Claim)]
    [InlineData("api/v1/TOKEN/firmware", CoapResource.Firmware)]
    [InlineData("api/v1/TOKEN/rpc/x", CoapResource.Unknown)]
    [InlineData("api/v2/TOKEN/telemetry", CoapResource.Unknown)]
    [InlineData("api/v1/TOKEN", CoapResource.Unknown)]
    [InlineData("api/v1/TOKEN/telemetry/1/2", CoapResource.Unknown)]
    public void Request_RoutesTheUriPath(string path, object expectedValue)
    {
        var expected = (CoapResource)expectedValue;
        var bytes = Message(CoapMessageType.Confirmable, CoapCode.Post, 1, [], w =>
        {
            foreach (var segment in path.Split('/'))
            {
                w.Option(CoapOptionNumber.UriPath, Encoding.UTF8.GetBytes(segment));
            }

            w.Option(CoapOptionNumber.UriQuery, "title=fw"u8);
        });
        var request = CoapRequest.Read(new CoapMessageReader(bytes));
        Assert.Equal(expected, request.Resource);
        if (expected != CoapResource.Unknown)
        {
            Assert.Equal("TOKEN", Encoding.UTF8.GetString(request.AccessToken));
            Assert.Equal("fw", request.Query("title"u8));
            Assert.Null(request.Query("version"u8));
        }

        if (expected == CoapResource.RpcReply)
        {
            Assert.Equal(42, request.RpcId);
        }
    }

    [Fact]
    public void Request_FlagsUnknownCriticalOptions_ButNotElectiveOnes()
    {
        var critical = Message(CoapMessageType.Confirmable, CoapCode.Get, 1, [], w => w.Option(9, "x"u8));
        Assert.True(CoapRequest.Read(new CoapMessageReader(critical)).HasUnknownCritical);
        var elective = Message(CoapMessageType.Confirmable, CoapCode.Get, 1, [], w => w.Option(CoapOptionNumber.NoResponse, [26]));
        Assert.False(CoapRequest.Read(new CoapMessageReader(elective)).HasUnknownCritical);
    }

    [Fact]
    public void Request_ReadsObserveBlocksAndSize1()
    {
        var bytes = Message(CoapMessageType.Confirmable, CoapCode.Get, 1, [], w =>
        {
            w.UInt(CoapOptionNumber.Observe, 0);
            w.UInt(CoapOptionNumber.Block2, new CoapBlock(3, false, 4).Encode());
            w.UInt(CoapOptionNumber.Block1, new CoapBlock(0, true, 2).Encode());
            w.UInt(CoapOptionNumber.Size1, 4096);
        });
        var request = CoapRequest.Read(new CoapMessageReader(bytes));
        Assert.Equal(0u, request.Observe);
        Assert.Equal(new CoapBlock(3, false, 4), request.Block2);
        Assert.Equal(new CoapBlock(0, true, 2), request.Block1);
        Assert.Equal(4096, request.Size1);
        Assert.False(request.HasBadBlock);
    }

    [Fact]
    public void ParsingAndAnsweringATelemetryPost_AllocatesNothing()
    {
        var bytes = Message(CoapMessageType.Confirmable, CoapCode.Post, 1, [1, 2, 3, 4], w =>
        {
            w.Option(CoapOptionNumber.UriPath, "api"u8);
            w.Option(CoapOptionNumber.UriPath, "v1"u8);
            w.Option(CoapOptionNumber.UriPath, "A1_TEST_TOKEN"u8);
            w.Option(CoapOptionNumber.UriPath, "telemetry"u8);
            w.UInt(CoapOptionNumber.ContentFormat, CoapContentFormat.Json);
        }, "{\"temperature\":25}"u8.ToArray());
        var output = new byte[256];

        static int Once(byte[] bytes, byte[] output)
        {
            var reader = new CoapMessageReader(bytes);
            var request = CoapRequest.Read(reader);
            var response = new CoapResponse { Type = CoapMessageType.Acknowledgement, Code = CoapCode.Created, MessageId = reader.MessageId, Token = reader.Token };
            return request.Resource == CoapResource.Telemetry ? response.WriteTo(output) : 0;
        }

        Once(bytes, output);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            Once(bytes, output);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}

/// <summary>Builds messages for tests with the production writer (options in the order given).</summary>
internal sealed class CoapTestWriter(CoapMessageType type, byte code, ushort id, byte[] token)
{
    private readonly List<(ushort Number, byte[] Value)> _options = [];

    public void Option(ushort number, ReadOnlySpan<byte> value) => _options.Add((number, value.ToArray()));

    public void UInt(ushort number, uint value)
    {
        var bytes = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        _options.Add((number, bytes[(4 - CoapMessageWriter.UIntLength(value))..]));
    }

    public byte[] Finish(byte[] payload)
    {
        var sorted = _options.OrderBy(o => o.Number).ToList(); // stable: repeated options keep their order
        _options.Clear();
        _options.AddRange(sorted);
        var size = CoapMessageWriter.HeaderSize(token) + CoapMessageWriter.PayloadSize(payload.Length);
        var last = 0;
        foreach (var (number, value) in _options)
        {
            size += CoapMessageWriter.OptionSize(number - last, value.Length);
            last = number;
        }

        var buffer = new byte[size];
        var w = new CoapMessageWriter(buffer, type, code, id, token);
        foreach (var (number, value) in _options)
        {
            w.WriteOption(number, value);
        }

        w.WritePayload(payload);
        Assert.Equal(size, w.Length);
        return buffer;
    }
}
