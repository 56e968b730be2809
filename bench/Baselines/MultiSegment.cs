using System.Buffers;

namespace Perf.Bench.Baselines;

/// <summary>Builds a <see cref="ReadOnlySequence{T}"/> over fixed-size segments, as a socket read of several pooled blocks looks.</summary>
internal sealed class MultiSegment : ReadOnlySequenceSegment<byte>
{
    private MultiSegment(ReadOnlyMemory<byte> memory, long runningIndex)
    {
        Memory = memory;
        RunningIndex = runningIndex;
    }

    public static ReadOnlySequence<byte> Create(byte[] data, int segmentSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentSize, 1);
        var first = new MultiSegment(data.AsMemory(0, Math.Min(segmentSize, data.Length)), 0);
        var last = first;
        for (var offset = segmentSize; offset < data.Length; offset += segmentSize)
        {
            var next = new MultiSegment(data.AsMemory(offset, Math.Min(segmentSize, data.Length - offset)), offset);
            last.Next = next;
            last = next;
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }
}
