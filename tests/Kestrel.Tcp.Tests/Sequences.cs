using System.Buffers;

namespace Perf.Kestrel.Tcp.Tests;

/// <summary>Builds multi-segment sequences so framers are tested across segment boundaries.</summary>
internal static class Sequences
{
    public static ReadOnlySequence<byte> OneBytePerSegment(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        var first = new Segment(data[..1].ToArray(), 0);
        var last = first;
        for (int i = 1; i < data.Length; i++)
        {
            last = last.Append(data.Slice(i, 1).ToArray());
        }

        return new ReadOnlySequence<byte>(first, 0, last, 1);
    }

    public static ReadOnlySequence<byte> Split(ReadOnlySpan<byte> data, int at)
    {
        if (at <= 0 || at >= data.Length)
        {
            return new ReadOnlySequence<byte>(data.ToArray());
        }

        var first = new Segment(data[..at].ToArray(), 0);
        var last = first.Append(data[at..].ToArray());
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
