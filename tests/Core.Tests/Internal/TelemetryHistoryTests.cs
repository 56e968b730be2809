using System.Buffers;
using System.Runtime.CompilerServices;
using Perf.Core.Internal;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests.Internal;

public class TelemetryHistoryTests
{
    private const string Key = "temperature";

    [Fact]
    public void Put_InTsOrder_KeepsEveryPointAndType()
    {
        using var history = new TelemetryHistory();
        history.Put(1, new KvEntry(Key, true));
        history.Put(2, new KvEntry(Key, -42L));
        history.Put(3, new KvEntry(Key, 21.5));
        history.Put(4, new KvEntry(Key, "ON"));
        history.Put(5, new KvEntry(Key, """{"a":[1,2]}""", isJson: true));
        history.Put(6, new KvEntry(Key, false));
        history.Put(7, new KvEntry(Key, long.MinValue));
        history.Put(8, new KvEntry(Key, double.NaN));
        history.Put(9, new KvEntry(Key, string.Empty));

        var all = history.Range(long.MinValue, long.MaxValue, Key);

        Assert.Equal(
        [
            new(1, new KvEntry(Key, true)), new(2, new KvEntry(Key, -42L)), new(3, new KvEntry(Key, 21.5)),
            new(4, new KvEntry(Key, "ON")), new(5, new KvEntry(Key, """{"a":[1,2]}""", isJson: true)),
            new(6, new KvEntry(Key, false)), new(7, new KvEntry(Key, long.MinValue)), new(8, new KvEntry(Key, double.NaN)),
            new(9, new KvEntry(Key, string.Empty)),
        ], all);
        Assert.Equal(DataType.Json, all[4].Entry.Type);
        Assert.Same(Key, all[0].Entry.Key);
        Assert.Equal(9, history.Count);
    }

    [Fact]
    public void Put_AtAnExistingTs_ReplacesThePoint_LastOrInTheMiddle_WhateverTheNewSize()
    {
        using var history = new TelemetryHistory();
        for (var ts = 0; ts < 5_000; ts++)
        {
            history.Put(ts, new KvEntry(Key, (long)ts));
        }

        history.Put(4_999, new KvEntry(Key, "last, now a string"));   // the last point, bigger
        history.Put(4_999, new KvEntry(Key, true));                   // and smaller again
        history.Put(10, new KvEntry(Key, 1_000_000L));                // same size, in place
        history.Put(11, new KvEntry(Key, "a longer value than a long")); // different size: block rebuilt
        history.Put(0, new KvEntry(Key, 0.5));                        // the very first point

        var all = history.Range(long.MinValue, long.MaxValue, Key);
        Assert.Equal(5_000, all.Length);
        Assert.Equal(5_000, history.Count);
        Assert.Equal(new KvEntry(Key, true), all[4_999].Entry);
        Assert.Equal(new KvEntry(Key, 1_000_000L), all[10].Entry);
        Assert.Equal(new KvEntry(Key, "a longer value than a long"), all[11].Entry);
        Assert.Equal(new KvEntry(Key, 0.5), all[0].Entry);
        Assert.Equal(new KvEntry(Key, 12L), all[12].Entry);
        Assert.True(IsStrictlyAscending(all));
    }

    [Fact]
    public void Put_OutOfOrder_InsertsInTsOrder_AcrossBlocks()
    {
        using var history = new TelemetryHistory();
        // Even timestamps first (spanning several blocks), then the odd ones in reverse, then one before all.
        for (var ts = 0L; ts < 20_000; ts += 2)
        {
            history.Put(ts, new KvEntry(Key, ts));
        }
        Assert.True(history.BlockCount > 2);
        for (var ts = 19_999L; ts > 0; ts -= 2)
        {
            history.Put(ts, new KvEntry(Key, ts));
        }
        history.Put(-5, new KvEntry(Key, -5L));

        var all = history.Range(long.MinValue, long.MaxValue, Key);
        Assert.Equal(20_001, all.Length);
        Assert.Equal(-5, all[0].Ts);
        for (var i = 1; i < all.Length; i++)
        {
            Assert.Equal(i - 1, all[i].Ts);
            Assert.Equal(i - 1, all[i].Entry.LongValue);
        }
    }

    [Fact]
    public void Range_IsHalfOpen_ExceptThatMaxValueIncludesItself()
    {
        using var history = new TelemetryHistory();
        foreach (var ts in new[] { long.MinValue, -1, 0, 10, 20, long.MaxValue })
        {
            history.Put(ts, new KvEntry(Key, ts));
        }

        Assert.Equal([0L, 10L], history.Range(0, 20, Key).Select(p => p.Ts));
        Assert.Equal([20L, long.MaxValue], history.Range(11, long.MaxValue, Key).Select(p => p.Ts));
        Assert.Equal([long.MinValue, -1L], history.Range(long.MinValue, 0, Key).Select(p => p.Ts));
        Assert.Empty(history.Range(20, 20, Key));
        Assert.Empty(history.Range(30, 10, Key));
        Assert.Empty(history.Range(11, 20, Key));
    }

    [Fact]
    public void Delete_RemovesOnlyTheRange_InsideOneBlockAndAcrossWholeBlocks()
    {
        using var history = new TelemetryHistory();
        for (var ts = 0L; ts < 10_000; ts++)
        {
            history.Put(ts, new KvEntry(Key, ts));
        }
        var blocks = history.BlockCount;

        history.Delete(100, 110);          // inside a block
        history.Delete(2_000, 8_000);      // whole blocks plus partial ends
        history.Delete(9_990, long.MaxValue);
        history.Delete(50, 50);            // empty range: nothing

        var expected = Enumerable.Range(0, 10_000).Select(i => (long)i)
            .Where(ts => ts is not (>= 100 and < 110) and not (>= 2_000 and < 8_000) and < 9_990).ToArray();
        Assert.Equal(expected, history.Range(long.MinValue, long.MaxValue, Key).Select(p => p.Ts));
        Assert.Equal(expected.Length, history.Count);
        Assert.True(history.BlockCount < blocks);

        history.Delete(long.MinValue, long.MaxValue);
        Assert.Equal(0, history.Count);
        Assert.Equal(0, history.BlockCount);
        Assert.Equal(0, history.NativeBytes);
    }

    [Fact]
    public void TrimBefore_DropsOlderPoints_AndFreesWholeBlocks()
    {
        using var history = new TelemetryHistory();
        for (var ts = 0L; ts < 10_000; ts++)
        {
            history.Put(ts, new KvEntry(Key, (double)ts));
        }
        var bytes = history.NativeBytes;

        history.TrimBefore(7_500);

        var all = history.Range(long.MinValue, long.MaxValue, Key);
        Assert.Equal(2_500, all.Length);
        Assert.Equal(7_500, all[0].Ts);
        Assert.Equal(7_500.0, all[0].Entry.DoubleValue);
        Assert.True(history.NativeBytes < bytes / 2);

        history.TrimBefore(long.MaxValue); // everything before MaxValue: nothing at MaxValue here, so all
        Assert.Equal(0, history.Count);
    }

    [Fact]
    public void Put_StringsLargerThanABlock_GetTheirOwnBlock_AndRoundTrip()
    {
        using var history = new TelemetryHistory();
        var big = new string('é', TelemetryHistory.BlockSize); // 2 UTF-8 bytes each: twice a block
        history.Put(1, new KvEntry(Key, 1L));
        history.Put(2, new KvEntry(Key, big));
        history.Put(3, new KvEntry(Key, 3L));
        history.Put(0, new KvEntry(Key, big + "x", isJson: true)); // out of order, before everything
        history.Put(2, new KvEntry(Key, big + "y"));               // replace the big one, bigger still

        var all = history.Range(long.MinValue, long.MaxValue, Key);
        Assert.Equal([0L, 1L, 2L, 3L], all.Select(p => p.Ts));
        Assert.Equal(big + "x", all[0].Entry.Text);
        Assert.Equal(DataType.Json, all[0].Entry.Type);
        Assert.Equal(big + "y", all[2].Entry.Text);
        Assert.Equal(3L, all[3].Entry.LongValue);
    }

    [Fact]
    public void Put_NonAsciiAndEscapedLookingStrings_RoundTripExactly()
    {
        using var history = new TelemetryHistory();
        string[] values = ["température", "日本語", "emoji 😀", "quote \" backslash \\ newline \n", "\0nul"];
        for (var i = 0; i < values.Length; i++)
        {
            history.Put(i, new KvEntry(Key, values[i]));
        }

        Assert.Equal(values, history.Range(long.MinValue, long.MaxValue, Key).Select(p => p.Entry.Text));
    }

    [Fact]
    public void RandomOperations_MatchASortedDictionaryModel()
    {
        var random = new Random(12);
        using var history = new TelemetryHistory();
        var model = new SortedDictionary<long, KvEntry>();
        for (var step = 0; step < 60_000; step++)
        {
            var op = random.Next(1_000);
            if (op < 985)
            {
                // Mostly appends near the end, some rewrites of existing ts, some old ts.
                long ts = op < 800 ? (model.Count == 0 ? 0 : model.Keys.Last() + random.Next(0, 3)) : random.Next(0, 40_000);
                var value = RandomValue(random);
                history.Put(ts, value);
                model[ts] = value;
            }
            else if (op < 995)
            {
                long start = random.Next(0, 40_000);
                long end = start + random.Next(0, 500);
                history.Delete(start, end);
                foreach (var ts in model.Keys.Where(t => t >= start && t < end).ToList())
                {
                    model.Remove(ts);
                }
            }
            else
            {
                long cutoff = random.Next(0, 2_000);
                history.TrimBefore(cutoff);
                foreach (var ts in model.Keys.Where(t => t < cutoff).ToList())
                {
                    model.Remove(ts);
                }
            }

            if (step % 5_000 == 0)
            {
                AssertSame(model, history);
            }
        }
        AssertSame(model, history);
        long from = 10_000, to = 20_000;
        Assert.Equal(model.Where(p => p.Key >= from && p.Key < to).Select(p => new TsKvEntry(p.Key, p.Value)), history.Range(from, to, Key));
    }

    [Fact]
    public void WriteEntries_GivesTheSameBytesAsWritingTheRangeEntryByEntry_InChunks()
    {
        var random = new Random(7);
        using var history = new TelemetryHistory();
        for (var i = 0; i < 12_000; i++)
        {
            history.Put(random.Next(0, 30_000), RandomValue(random));
        }
        var points = history.Range(long.MinValue, long.MaxValue, Key);

        // Each call is a chunk of its own: it starts with a whole ts.
        var expected = new RecordWriter(RecordKind.TelemetryHistory);
        foreach (var chunk in points.Chunk(4_096))
        {
            WriteChunk(ref expected, chunk);
        }
        var actual = new RecordWriter(RecordKind.TelemetryHistory);
        var position = default(TelemetryHistory.SnapshotPosition);
        var written = 0;
        int n;
        while ((n = history.WriteEntries(ref actual, ref position, 4_096)) > 0)
        {
            written += n;
        }

        Assert.Equal(points.Length, written);
        var expectedBytes = expected.Detach(out var expectedLength);
        var actualBytes = actual.Detach(out var actualLength);
        Assert.True(expectedBytes.AsSpan(0, expectedLength).SequenceEqual(actualBytes.AsSpan(0, actualLength)));
    }

    [Fact]
    public void WriteEntries_ReadsBackAsTheSamePoints_WithGapsBeyond32BitsAndTsAtBothEnds()
    {
        using var history = new TelemetryHistory();
        long[] stamps = [long.MinValue, -5_000_000_000_000, -1, 0, 1, 2, 1L << 33, (1L << 33) + 1, 1_700_000_000_000, long.MaxValue];
        var random = new Random(11);
        foreach (var ts in stamps)
        {
            history.Put(ts, RandomValue(random));
        }
        var points = history.Range(long.MinValue, long.MaxValue, Key);
        Assert.Equal(stamps.Length, points.Length);

        var w = new RecordWriter(RecordKind.TelemetryHistory);
        var position = history.PositionAt(0);
        Assert.Equal(points.Length, history.WriteEntries(ref w, ref position, int.MaxValue));
        var bytes = w.Detach(out var length);
        var reader = new RecordReader(bytes.AsSpan(0, length), new KeyTable());
        Assert.Equal((byte)RecordKind.TelemetryHistory, reader.ReadByte());
        var read = new TsKvEntry[points.Length];
        var at = 0L;
        for (var i = 0; i < read.Length; i++)
        {
            at = i == 0 ? reader.ReadInt64() : unchecked(at + (long)reader.ReadVarUInt64());
            read[i] = new TsKvEntry(at, reader.ReadKvValue(Key));
        }
        Assert.Equal(points, read);
        // Small steps take one byte each: the chunk is smaller than the log record's 8-byte ts and key per point.
        Assert.True(length < points.Sum(p => 8 + 1 + Key.Length + 9 + (p.Entry.Text?.Length ?? 0) * 2), $"{length} bytes");
        ArrayPool<byte>.Shared.Return(bytes);
    }

    [Fact]
    public void PositionAtAndCountBefore_LetASnapshotStartAtAnyPoint()
    {
        var random = new Random(3);
        using var history = new TelemetryHistory();
        for (var i = 0; i < 9_000; i++)
        {
            history.Put(random.Next(0, 20_000), RandomValue(random));
        }
        var points = history.Range(long.MinValue, long.MaxValue, Key);

        foreach (var index in new[] { 0, 1, 4_095, 4_096, points.Length / 2, points.Length - 1, points.Length, points.Length + 10 })
        {
            var expected = new RecordWriter(RecordKind.TelemetryHistory);
            WriteChunk(ref expected, points.Skip(index).ToArray());
            var actual = new RecordWriter(RecordKind.TelemetryHistory);
            var position = history.PositionAt(index);
            var written = history.WriteEntries(ref actual, ref position, int.MaxValue);

            Assert.Equal(Math.Max(0, points.Length - index), written);
            var expectedBytes = expected.Detach(out var expectedLength);
            var actualBytes = actual.Detach(out var actualLength);
            Assert.True(expectedBytes.AsSpan(0, expectedLength).SequenceEqual(actualBytes.AsSpan(0, actualLength)), $"index {index}");
        }

        foreach (var ts in new long[] { long.MinValue, 0, 1, 7_777, 19_999, 20_000, long.MaxValue })
        {
            Assert.Equal(points.Count(p => p.Ts < ts), history.CountBefore(ts));
        }
    }

    [Fact]
    public void ManySeries_EachKeepsItsOwnPoints()
    {
        var histories = Enumerable.Range(0, 200).Select(_ => new TelemetryHistory()).ToArray();
        try
        {
            for (var ts = 0L; ts < 300; ts++)
            {
                for (var s = 0; s < histories.Length; s++)
                {
                    histories[s].Put(ts, new KvEntry(Key, s * 1_000L + ts));
                }
            }
            for (var s = 0; s < histories.Length; s++)
            {
                var all = histories[s].Range(long.MinValue, long.MaxValue, Key);
                Assert.Equal(300, all.Length);
                Assert.Equal(s * 1_000L + 299, all[^1].Entry.LongValue);
            }
        }
        finally
        {
            foreach (var history in histories)
            {
                history.Dispose();
            }
        }
    }

    [Fact]
    public void Dispose_FreesTheBlocks_AndTheHistoryIsEmptyAndUsableAfterwards()
    {
        var history = new TelemetryHistory();
        for (var ts = 0L; ts < 5_000; ts++)
        {
            history.Put(ts, new KvEntry(Key, "value " + ts));
        }
        Assert.True(history.NativeBytes >= TelemetryHistory.BlockSize);

        history.Dispose();

        Assert.Equal(0, history.NativeBytes);
        Assert.Empty(history.Range(long.MinValue, long.MaxValue, Key));
        history.Put(1, new KvEntry(Key, 1L));
        Assert.Single(history.Range(long.MinValue, long.MaxValue, Key));
        history.Dispose();
    }

    /// <summary>A <see cref="RecordKind.TelemetryHistory"/> chunk's points, written entry by entry.</summary>
    private static void WriteChunk(ref RecordWriter w, TsKvEntry[] points)
    {
        for (var i = 0; i < points.Length; i++)
        {
            if (i == 0)
            {
                w.WriteInt64(points[i].Ts);
            }
            else
            {
                w.WriteVarUInt64(unchecked((ulong)(points[i].Ts - points[i - 1].Ts)));
            }
            w.WriteKvValue(points[i].Entry);
        }
    }

    private static KvEntry RandomValue(Random random) => random.Next(5) switch
    {
        0 => new KvEntry(Key, random.Next(2) == 0),
        1 => new KvEntry(Key, random.NextInt64()),
        2 => new KvEntry(Key, random.NextDouble()),
        3 => new KvEntry(Key, new string('s', random.Next(0, 40)) + "é"),
        _ => new KvEntry(Key, random.Next(50) == 0 ? new string('j', 20_000) : "{\"v\":" + random.Next() + "}", isJson: true),
    };

    private static void AssertSame(SortedDictionary<long, KvEntry> model, TelemetryHistory history)
    {
        Assert.Equal(model.Count, history.Count);
        Assert.Equal(model.Select(p => new TsKvEntry(p.Key, p.Value)), history.Range(long.MinValue, long.MaxValue, Key));
    }

    private static bool IsStrictlyAscending(TsKvEntry[] points)
    {
        for (var i = 1; i < points.Length; i++)
        {
            if (points[i].Ts <= points[i - 1].Ts)
            {
                return false;
            }
        }
        return true;
    }
}

/// <summary>
/// Process-wide native-memory accounting: alone in its collection, with parallelization off, so no other
/// test's histories are allocated or freed while it counts.
/// </summary>
[Collection(Name)]
public class TelemetryHistoryLeakTests
{
    public const string Name = "TelemetryHistory native memory";

    [Fact]
    public void ADroppedHistory_IsFreedByFinalization()
    {
        // Alone in its collection (no other test allocates meanwhile); histories other tests dropped are
        // finalized first, so the count only moves by this test's blocks.
        for (var i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        var before = TelemetryHistory.LiveNativeBytes;
        FillAndDrop(50);
        Assert.True(TelemetryHistory.LiveNativeBytes - before >= 50L * TelemetryHistory.BlockSize);

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (TelemetryHistory.LiveNativeBytes > before && DateTime.UtcNow < deadline)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        Assert.Equal(before, TelemetryHistory.LiveNativeBytes);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void FillAndDrop(int blocks)
    {
        var history = new TelemetryHistory();
        var ts = 0L;
        while (history.BlockCount < blocks)
        {
            history.Put(ts++, new KvEntry("k", new string('x', 1_000)));
        }
    }
}

[CollectionDefinition(TelemetryHistoryLeakTests.Name, DisableParallelization = true)]
public class TelemetryHistoryLeakCollection
{
}
