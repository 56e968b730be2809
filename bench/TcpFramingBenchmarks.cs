using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Perf.Kestrel.Tcp;
using Perf.Kestrel.Tcp.Internal;

namespace Perf.Bench;

/// <summary>TCP integration framers over an in-memory buffer of 100 frames; expected 0 B/op.</summary>
[BenchmarkCategory("Tcp", "Framing")]
public class TcpFramingBenchmarks
{
    private TcpFramer _line = null!;
    private TcpFramer _custom = null!;
    private TcpFramer _lengthField = null!;
    private TcpFramer _json = null!;
    private ReadOnlySequence<byte> _lines;
    private ReadOnlySequence<byte> _customLines;
    private ReadOnlySequence<byte> _lengthPrefixed;
    private ReadOnlySequence<byte> _objects;

    [GlobalSetup]
    public void Setup()
    {
        _line = TcpFramer.Create(new TcpHandlerConfiguration());
        _custom = TcpFramer.Create(new TcpHandlerConfiguration { MessageSeparator = TcpMessageSeparator.CUSTOM_SEPARATOR, CustomSeparator = "||" });
        _lengthField = TcpFramer.Create(new TcpHandlerConfiguration
        {
            HandlerType = TcpHandlerType.BINARY,
            LengthFieldLength = 2,
            ByteOrder = TcpByteOrder.BIG_ENDIAN,
            InitialBytesToStrip = 2,
        });
        _json = TcpFramer.Create(new TcpHandlerConfiguration { HandlerType = TcpHandlerType.JSON, MaxFrameLength = 256 });

        const string line = "SN-002,default,temperature,25.7";
        _lines = Repeat(Encoding.ASCII.GetBytes(line + "\n"));
        _customLines = Repeat(Encoding.ASCII.GetBytes(line + "||"));
        byte[] body = Encoding.ASCII.GetBytes(line);
        _lengthPrefixed = Repeat([(byte)(body.Length >> 8), (byte)body.Length, .. body]);
        _objects = Repeat("""{"deviceName":"SN-002","telemetry":{"temperature":25.7,"note":"a \"}\" b"}}"""u8.ToArray());
    }

    private static ReadOnlySequence<byte> Repeat(byte[] frame) =>
        new(Enumerable.Repeat(frame, 100).SelectMany(b => b).ToArray());

    private static int Count(TcpFramer framer, ReadOnlySequence<byte> input)
    {
        var reader = new SequenceReader<byte>(input);
        int frames = 0;
        while (framer.TryRead(ref reader, out _))
        {
            frames++;
        }

        return frames;
    }

    [Benchmark(OperationsPerInvoke = 100)]
    public int LineFramer() => Count(_line, _lines);

    [Benchmark(OperationsPerInvoke = 100)]
    public int CustomSeparatorFramer() => Count(_custom, _customLines);

    [Benchmark(OperationsPerInvoke = 100)]
    public int LengthFieldFramer() => Count(_lengthField, _lengthPrefixed);

    [Benchmark(OperationsPerInvoke = 100)]
    public int JsonObjectFramer() => Count(_json, _objects);
}
