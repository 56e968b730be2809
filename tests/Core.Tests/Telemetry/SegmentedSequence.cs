using System.Buffers;

namespace Perf.Core.Tests.Telemetry;

/// <summary>Builds multi-segment <see cref="ReadOnlySequence{T}"/>s, e.g. one byte per segment, as a socket might deliver them.</summary>
internal static class SegmentedSequence
{
    public static ReadOnlySequence<byte> OneBytePerSegment(ReadOnlySpan<byte> bytes) => Split(bytes, 1);

    /// <summary>Two segments, the first holding <paramref name="firstLength"/> bytes.</summary>
    public static ReadOnlySequence<byte> SplitAt(ReadOnlySpan<byte> bytes, int firstLength)
    {
        var first = new Segment(bytes[..firstLength].ToArray(), 0);
        Segment last = first.Append(bytes[firstLength..].ToArray());
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    public static ReadOnlySequence<byte> Split(ReadOnlySpan<byte> bytes, int segmentLength)
    {
        if (bytes.IsEmpty)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        Segment first = new(bytes[..Math.Min(segmentLength, bytes.Length)].ToArray(), 0);
        Segment last = first;
        for (int offset = segmentLength; offset < bytes.Length; offset += segmentLength)
        {
            last = last.Append(bytes.Slice(offset, Math.Min(segmentLength, bytes.Length - offset)).ToArray());
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(byte[] data, long runningIndex)
        {
            Memory = data;
            RunningIndex = runningIndex;
        }

        public Segment Append(byte[] data)
        {
            var next = new Segment(data, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
