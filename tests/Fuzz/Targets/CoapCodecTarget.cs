using System.Text;
using Perf.Coap.Internal;
using Perf.Fuzz.Harness;

namespace Perf.Fuzz.Targets;

/// <summary>
/// CoAP codec: <see cref="CoapMessageReader"/> on one datagram, then everything the door reads from a
/// valid message (<see cref="CoapRequest.Read"/>, queries, block options). Invariants: only
/// <see cref="CoapFormatException"/> escapes; the header-only reader agrees with the full one; a valid
/// message re-encoded with <see cref="CoapMessageWriter"/> is byte-identical (RFC 7252's option encoding
/// is canonical); a response built from the request's options sizes exactly and parses back.
/// </summary>
internal sealed class CoapCodecTarget : FuzzTarget
{
    public override string Name => "coap";

    public override string Description => "CoapMessageReader + CoapRequest.Read + CoapMessageWriter/CoapResponse round trips";

    public override int MaxInputLength => 2048;

    public override IReadOnlyList<byte[]> Dictionary { get; } =
    [
        .. new[] { "api", "v1", "telemetry", "attributes", "rpc", "claim", "firmware", "clientKeys=a,b", "sharedKeys=c", "title=fw", "version=1.0", "size=", "chunk=" }
            .Select(Encoding.UTF8.GetBytes),
        [0xFF], [0xB3, (byte)'a', (byte)'p', (byte)'i'], [0x60], [0x61, 0x00], [0x11, 0x32], [0xD1, 0x0A, 0x06], [0xD1, 0x0E, 0x06], [0xE0, 0x00, 0x00],
        [0xDD, 0x00, 0x00], [0xEE, 0xFF, 0xFF, 0xFF, 0xFF], [0x0F], [0xF0],
    ];

    public override ulong Run(ReadOnlySpan<byte> input)
    {
        var signature = new Signature();
        bool headerOk = CoapMessageReader.TryReadHeader(input, out var headerType, out var headerId);
        CoapMessageReader message;
        try
        {
            message = new CoapMessageReader(input);
        }
        catch (CoapFormatException ex)
        {
            signature.Add((ulong)ex.Reason);
            if (ex.Reason is not (CoapFormatError.TooShort or CoapFormatError.UnknownVersion))
            {
                FuzzInvariantException.Check(headerOk, $"{ex.Reason}, yet TryReadHeader cannot read the header an RST needs");
            }

            return signature.Value;
        }

        FuzzInvariantException.Check(headerOk && headerType == message.Type && headerId == message.MessageId, "TryReadHeader disagrees with the reader");
        signature.Add(100 + (ulong)message.Type);
        signature.Add(message.Code);

        // Re-encode: header, token, every option, payload.
        var copy = new byte[input.Length];
        var writer = new CoapMessageWriter(copy, message.Type, message.Code, message.MessageId, message.Token);
        int count = 0;
        ushort last = 0;
        foreach (var option in message.Options)
        {
            FuzzInvariantException.Check(option.Number >= last, "options enumerate out of order");
            last = option.Number;
            writer.WriteOption(option.Number, option.Value);
            count++;
        }

        writer.WritePayload(message.Payload);
        FuzzInvariantException.Check(writer.Length == input.Length && copy.AsSpan().SequenceEqual(input),
            $"re-encoded message differs: {Convert.ToHexString(copy.AsSpan(0, Math.Min(writer.Length, copy.Length)))}");
        signature.Add((ulong)Math.Min(count, 8));

        var request = CoapRequest.Read(message);
        signature.Add(200 + (ulong)request.Resource);
        signature.Add(request.HasBadBlock ? 1UL : 0UL);
        signature.Add(request.HasUnknownCritical ? 1UL : 0UL);
        foreach (var name in new[] { "clientKeys"u8.ToArray(), "sharedKeys"u8.ToArray(), "title"u8.ToArray(), "version"u8.ToArray(), "size"u8.ToArray(), "chunk"u8.ToArray() })
        {
            _ = request.Query(name);
        }

        foreach (var block in new[] { request.Block1, request.Block2 })
        {
            if (block is { } b)
            {
                FuzzInvariantException.Check(CoapBlock.TryDecode(b.Encode(), out var again) && again == b, $"block {b} does not survive Encode/TryDecode");
                FuzzInvariantException.Check(b.Size is >= 16 and <= 1024, $"block size {b.Size}");
            }
        }

        RespondLike(message, request);
        return signature.Value;
    }

    /// <summary>A response carrying the request's token, options the server echoes and payload: GetSize is exact and it parses back.</summary>
    private static void RespondLike(in CoapMessageReader message, in CoapRequest request)
    {
        var response = new CoapResponse
        {
            Type = CoapMessageType.Acknowledgement,
            Code = CoapCode.Content,
            MessageId = message.MessageId,
            Token = message.Token,
            Observe = request.Observe,
            ContentFormat = request.ContentFormat,
            Block2 = request.Block2,
            Block1 = request.Block1,
            Size2 = request.Size1,
            Size1 = request.Size1,
            Payload = message.Payload,
        };
        int size = response.GetSize();
        var buffer = new byte[size];
        int written = response.WriteTo(buffer);
        FuzzInvariantException.Equal(size, written, "response GetSize vs WriteTo");
        CoapMessageReader back;
        try
        {
            back = new CoapMessageReader(buffer);
        }
        catch (CoapFormatException ex)
        {
            throw new FuzzInvariantException($"our own response does not parse: {ex.Reason}: {Convert.ToHexString(buffer)}");
        }

        FuzzInvariantException.Check(back.Token.SequenceEqual(message.Token) && back.Payload.SequenceEqual(message.Payload), "response token/payload");
        var reread = CoapRequest.Read(back);
        FuzzInvariantException.Equal(request.Observe, reread.Observe, "Observe");
        FuzzInvariantException.Equal(request.ContentFormat, reread.ContentFormat, "Content-Format");
        FuzzInvariantException.Equal(request.Block1, reread.Block1, "Block1");
        FuzzInvariantException.Equal(request.Block2, reread.Block2, "Block2");
        FuzzInvariantException.Equal(request.Size1, reread.Size1, "Size1");
    }

    public override IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        const string token = "A1_TEST_TOKEN";
        yield return ("post-telemetry", Request(CoapMessageType.Confirmable, CoapCode.Post, 0x1234, [0xA1, 0xB2], ["api", "v1", token, "telemetry"], [],
            contentFormat: CoapContentFormat.Json, payload: "{\"temperature\":25}"));
        yield return ("post-attributes-non", Request(CoapMessageType.NonConfirmable, CoapCode.Post, 2, [], ["api", "v1", token, "attributes"], [],
            payload: "{\"firmware_version\":\"1.0.1\",\"serial\":\"SN-001\"}"));
        yield return ("get-attributes", Request(CoapMessageType.Confirmable, CoapCode.Get, 3, [1, 2, 3, 4, 5, 6, 7, 8], ["api", "v1", token, "attributes"],
            ["clientKeys=attribute1,attribute2", "sharedKeys=shared1,shared2"]));
        yield return ("observe-attributes", Request(CoapMessageType.Confirmable, CoapCode.Get, 4, [9], ["api", "v1", token, "attributes"], [], observe: 0));
        yield return ("observe-rpc", Request(CoapMessageType.Confirmable, CoapCode.Get, 5, [0x42], ["api", "v1", token, "rpc"], [], observe: 0));
        yield return ("rpc-reply", Request(CoapMessageType.Confirmable, CoapCode.Post, 6, [7], ["api", "v1", token, "rpc", "1"], [], payload: "{\"result\":\"ok\"}"));
        yield return ("client-rpc", Request(CoapMessageType.Confirmable, CoapCode.Post, 7, [], ["api", "v1", token, "rpc"], [],
            payload: "{\"method\":\"getCurrentTime\",\"params\":{}}"));
        yield return ("firmware-block2", Request(CoapMessageType.Confirmable, CoapCode.Get, 8, [3], ["api", "v1", token, "firmware"],
            ["title=fw", "version=1.0"], block2: new CoapBlock(3, false, 5)));
        yield return ("telemetry-block1", Request(CoapMessageType.Confirmable, CoapCode.Post, 9, [4], ["api", "v1", token, "telemetry"], [],
            block1: new CoapBlock(0, true, 2), size1: 300, payload: new string('x', 64)));
        yield return ("claim", Request(CoapMessageType.Confirmable, CoapCode.Post, 10, [], ["api", "v1", token, "claim"], [],
            payload: "{\"secretKey\":\"value\",\"durationMs\":60000}"));
        yield return ("ping", [0x40, 0x00, 0x00, 0x0B]);
        yield return ("rst", [0x70, 0x00, 0x00, 0x0C]);
        yield return ("ack", [0x60, 0x00, 0x00, 0x0D]);
        yield return ("unknown-critical", Request(CoapMessageType.Confirmable, CoapCode.Get, 14, [], ["api", "v1", token, "attributes"], [], extra: (9, [1])));
    }

    private static byte[] Request(CoapMessageType type, byte code, ushort id, byte[] token, string[] path, string[] query,
        uint? observe = null, ushort? contentFormat = null, CoapBlock? block2 = null, CoapBlock? block1 = null, uint? size1 = null,
        string? payload = null, (ushort Number, byte[] Value)? extra = null)
    {
        var buffer = new byte[4096];
        var w = new CoapMessageWriter(buffer, type, code, id, token);
        if (observe is { } o)
        {
            w.WriteUIntOption(CoapOptionNumber.Observe, o);
        }

        if (extra is { Number: < CoapOptionNumber.UriPath } e)
        {
            w.WriteOption(e.Number, e.Value);
        }

        foreach (var segment in path)
        {
            w.WriteOption(CoapOptionNumber.UriPath, Encoding.UTF8.GetBytes(segment));
        }

        if (contentFormat is { } cf)
        {
            w.WriteUIntOption(CoapOptionNumber.ContentFormat, cf);
        }

        foreach (var q in query)
        {
            w.WriteOption(CoapOptionNumber.UriQuery, Encoding.UTF8.GetBytes(q));
        }

        if (block2 is { } b2)
        {
            w.WriteUIntOption(CoapOptionNumber.Block2, b2.Encode());
        }

        if (block1 is { } b1)
        {
            w.WriteUIntOption(CoapOptionNumber.Block1, b1.Encode());
        }

        if (size1 is { } s1)
        {
            w.WriteUIntOption(CoapOptionNumber.Size1, s1);
        }

        if (payload is not null)
        {
            w.WritePayload(Encoding.UTF8.GetBytes(payload));
        }

        return buffer.AsSpan(0, w.Length).ToArray();
    }
}
