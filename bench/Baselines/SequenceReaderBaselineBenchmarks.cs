using System.Buffers;
using BenchmarkDotNet.Attributes;

namespace Perf.Bench.Baselines;

/// <summary>
/// The floor a delimiter framer is compared to: a bare <see cref="SequenceReader{T}"/> scan for '\n'
/// over a multi-segment sequence, with lines crossing segment boundaries. A framer that costs much more
/// than this per line is paying for its abstraction.
/// </summary>
[BenchmarkCategory("Baseline", "Framing")]
public class SequenceReaderBaselineBenchmarks
{
    // 256 lines of 64 bytes (63 + '\n') = 16 KiB over 4 KiB segments: the shape of a pipe read of pooled blocks.
    private const int LineLength = 64;
    private const int LineCount = 256;
    private const int SegmentSize = 4096;

    private ReadOnlySequence<byte> _sequence;
    private ReadOnlySequence<byte> _oddSequence;

    [GlobalSetup]
    public void Setup()
    {
        var data = new byte[LineLength * LineCount];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = (i % LineLength) == LineLength - 1 ? (byte)'\n' : (byte)('a' + (i % 26));
        }

        _sequence = MultiSegment.Create(data, SegmentSize);
        // 1000-byte segments do not divide the line length, so lines straddle segments.
        _oddSequence = MultiSegment.Create(data, 1000);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = LineCount)]
    public int TryReadTo_AlignedSegments() => CountLines(_sequence);

    [Benchmark(OperationsPerInvoke = LineCount)]
    public int TryReadTo_StraddlingSegments() => CountLines(_oddSequence);

    private static int CountLines(ReadOnlySequence<byte> sequence)
    {
        var reader = new SequenceReader<byte>(sequence);
        var lines = 0;
        while (reader.TryReadTo(out ReadOnlySequence<byte> _, (byte)'\n'))
        {
            lines++;
        }

        return lines;
    }
}
