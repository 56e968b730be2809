using BenchmarkDotNet.Attributes;
using Perf.Coap.Internal;

namespace Perf.Bench.Coap;

/// <summary>
/// The CoAP codec on one datagram in memory (no sockets): <see cref="CoapMessageReader"/> validating a
/// request and <see cref="CoapRequest.Read"/> resolving its URI and options, as every received datagram
/// goes; <see cref="CoapResponse"/> sizing and writing the answers the server sends most. The reader is
/// a view over the datagram and the writer fills a caller's span, so every benchmark is 0 B/op.
/// </summary>
[BenchmarkCategory("Coap", "Codec")]
public class CoapCodecBenchmarks
{
    private static readonly byte[] Token = [0x5A, 0x17, 0xC3, 0x01];
    private readonly byte[] _output = new byte[1500];
    private readonly byte[] _payload64 = Payload(64);
    private readonly byte[] _payload512 = Payload(512);
    private byte[] _telemetryPost = [];
    private byte[] _block1Post = [];
    private byte[] _observeGet = [];

    [GlobalSetup]
    public void Setup()
    {
        // CON POST /api/v1/{token}/telemetry, Content-Format 50 (RFC 7252 §12.3), 64 B of JSON.
        _telemetryPost = Request(CoapCode.Post, "telemetry", contentFormat: true, block1: null, observe: null, _payload64);
        // The first 512 B block of a larger upload (RFC 7959 §2.5: Block1 NUM 0, M 1, SZX 5) with Size1.
        _block1Post = Request(CoapCode.Post, "telemetry", contentFormat: true, block1: new CoapBlock(0, true, 5), observe: null, _payload512);
        // GET /api/v1/{token}/attributes with Observe 0: the subscription of RFC 7641 §3.1.
        _observeGet = Request(CoapCode.Get, "attributes", contentFormat: false, block1: null, observe: 0, []);
    }

    [Benchmark(Baseline = true)]
    public int Read_TelemetryPost() => Read(_telemetryPost);

    [Benchmark]
    public int Read_Block1Post() => Read(_block1Post);

    [Benchmark]
    public int Read_ObserveGet() => Read(_observeGet);

    /// <summary>The piggybacked 2.04 Changed that acknowledges a telemetry POST (§5.2.1).</summary>
    [Benchmark]
    public int Write_PiggybackedChanged()
    {
        var response = new CoapResponse
        {
            Type = CoapMessageType.Acknowledgement,
            Code = CoapCode.Changed,
            MessageId = 0x1234,
            Token = Token,
        };
        return Write(in response);
    }

    /// <summary>An attribute-update notification to an observer: Observe, Content-Format, 64 B payload (RFC 7641 §4.2).</summary>
    [Benchmark]
    public int Write_ObserveNotification()
    {
        var response = new CoapResponse
        {
            Type = CoapMessageType.NonConfirmable,
            Code = CoapCode.Content,
            MessageId = 0x1235,
            Token = Token,
            Observe = 42,
            ContentFormat = CoapContentFormat.Json,
            Payload = _payload64,
        };
        return Write(in response);
    }

    /// <summary>2.31 Continue for a Block1 upload (RFC 7959 §2.9.1).</summary>
    [Benchmark]
    public int Write_Block1Continue()
    {
        var response = new CoapResponse
        {
            Type = CoapMessageType.Acknowledgement,
            Code = CoapCode.Continue,
            MessageId = 0x1236,
            Token = Token,
            Block1 = new CoapBlock(0, true, 5),
        };
        return Write(in response);
    }

    private static int Read(byte[] datagram)
    {
        var message = new CoapMessageReader(datagram);
        var request = CoapRequest.Read(in message);
        return (int)request.Resource + message.Payload.Length + request.AccessToken.Length;
    }

    private int Write(in CoapResponse response)
    {
        var size = response.GetSize();
        return response.WriteTo(_output.AsSpan(0, size));
    }

    private static byte[] Request(byte code, string resource, bool contentFormat, CoapBlock? block1, uint? observe, byte[] payload)
    {
        var buffer = new byte[1500];
        var w = new CoapMessageWriter(buffer, CoapMessageType.Confirmable, code, 0x0101, Token);
        if (observe is { } o)
        {
            w.WriteUIntOption(CoapOptionNumber.Observe, o);
        }

        w.WriteOption(CoapOptionNumber.UriPath, "api"u8);
        w.WriteOption(CoapOptionNumber.UriPath, "v1"u8);
        w.WriteOption(CoapOptionNumber.UriPath, "A1_TEST_TOKEN_0123456789"u8);
        w.WriteOption(CoapOptionNumber.UriPath, System.Text.Encoding.ASCII.GetBytes(resource));
        if (contentFormat)
        {
            w.WriteUIntOption(CoapOptionNumber.ContentFormat, CoapContentFormat.Json);
        }

        if (block1 is { } b)
        {
            w.WriteUIntOption(CoapOptionNumber.Block1, b.Encode());
            w.WriteUIntOption(CoapOptionNumber.Size1, 2048);
        }

        w.WritePayload(payload);
        return buffer.AsSpan(0, w.Length).ToArray();
    }

    private static byte[] Payload(int size)
    {
        var bytes = new byte[size];
        bytes.AsSpan().Fill((byte)' ');
        "{\"temperature\":25.7}"u8.CopyTo(bytes);
        return bytes;
    }
}
