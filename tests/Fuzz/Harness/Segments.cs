using System.Buffers;

namespace Perf.Fuzz.Harness;

/// <summary>A linked segment, to build multi-segment sequences as a pipe hands them out.</summary>
internal sealed class BufferSegment : ReadOnlySequenceSegment<byte>
{
    public BufferSegment(ReadOnlyMemory<byte> memory) => Memory = memory;

    public BufferSegment Append(ReadOnlyMemory<byte> memory)
    {
        var next = new BufferSegment(memory) { RunningIndex = RunningIndex + Memory.Length };
        Next = next;
        return next;
    }

    /// <summary>A sequence over <paramref name="chunks"/> in order, one segment each (empty chunks included).</summary>
    public static ReadOnlySequence<byte> Sequence(IReadOnlyList<ReadOnlyMemory<byte>> chunks)
    {
        if (chunks.Count == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        if (chunks.Count == 1)
        {
            return new ReadOnlySequence<byte>(chunks[0]);
        }

        var first = new BufferSegment(chunks[0]);
        var last = first;
        for (int i = 1; i < chunks.Count; i++)
        {
            last = last.Append(chunks[i]);
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }
}

/// <summary>
/// How an input is cut into reads. Every stream target runs the same bytes as one read, one byte per read,
/// and a cut derived from the input's own hash, so a saved input alone reproduces every run.
/// </summary>
internal static class Segmenter
{
    public static IEnumerable<(string Name, int[] Cuts)> Plans(ReadOnlySpan<byte> input)
    {
        int length = input.Length;
        ulong hash = Hash(input);
        var plans = new List<(string, int[])>(3)
        {
            ("whole", []),
            ("bytewise", Enumerable.Range(1, Math.Max(0, length - 1)).ToArray()),
        };
        var rng = new Random(unchecked((int)hash ^ (int)(hash >> 32)));
        var cuts = new List<int>();
        for (int at = rng.Next(1, 9); at < length; at += rng.Next(1, 17))
        {
            cuts.Add(at);
        }

        plans.Add(("random", cuts.ToArray()));
        return plans;
    }

    public static ulong Hash(ReadOnlySpan<byte> data)
    {
        ulong h = 14695981039346656037UL;
        foreach (byte b in data)
        {
            h = (h ^ b) * 1099511628211UL;
        }

        return h;
    }
}

/// <summary>
/// Feeds a byte stream to a parse loop the way a <c>PipeReader</c> does: each read sees the unconsumed
/// bytes of earlier reads plus the new chunk (as separate segments), the loop returns how far it consumed,
/// and the rest is handed out again with the next chunk. The last call has <c>end</c> set and no new bytes.
/// </summary>
internal static class StreamFeeder
{
    public delegate long Process(ReadOnlySequence<byte> buffer, bool end);

    /// <returns>Bytes left unconsumed at the end.</returns>
    public static long Feed(byte[] data, int[] cuts, Process process)
    {
        // One linked segment per chunk, built once; each read is a window over them (O(1) to build).
        var segments = new BufferSegment[cuts.Length + 1];
        int start = 0;
        for (int i = 0; i <= cuts.Length; i++)
        {
            int end = i < cuts.Length ? cuts[i] : data.Length;
            var memory = data.AsMemory(start, end - start);
            segments[i] = i == 0 ? new BufferSegment(memory) : segments[i - 1].Append(memory);
            start = end;
        }

        int headSegment = 0, headOffset = 0;
        long consumedTotal = 0;
        for (int i = 0; i <= segments.Length; i++)
        {
            bool last = i == segments.Length;
            int tail = last ? segments.Length - 1 : i;
            var buffer = new ReadOnlySequence<byte>(segments[headSegment], headOffset, segments[tail], segments[tail].Memory.Length);
            long consumed = process(buffer, end: last);
            FuzzInvariantException.Check(consumed >= 0 && consumed <= buffer.Length, $"the parser consumed {consumed} of {buffer.Length} bytes");
            consumedTotal += consumed;
            while (consumed > 0)
            {
                int inHead = segments[headSegment].Memory.Length - headOffset;
                if (consumed < inHead || headSegment == tail)
                {
                    headOffset += (int)consumed;
                    consumed = 0;
                }
                else
                {
                    consumed -= inHead;
                    headSegment++;
                    headOffset = 0;
                }
            }

            // Skip fully consumed segments so the next window starts on unread bytes.
            while (headSegment < tail && headOffset == segments[headSegment].Memory.Length)
            {
                headSegment++;
                headOffset = 0;
            }
        }

        return data.Length - consumedTotal;
    }
}
