using System.Text;
using Perf.Core.Internal;

namespace Perf.Core.Tests.Internal;

/// <summary>
/// <see cref="StateStore"/> on its own: loading by key when the hybrid log holds several versions of keys and
/// tombstones (compaction amortized or off), recovery of the last persisted checkpoint only, and the disk the
/// log takes across many checkpoints.
/// </summary>
public class StateStoreTests
{
    private const long Segment = 1L << 22; // the smallest allowed: one 4 MiB page

    [Fact]
    public async Task Load_YieldsLatestVersionOfEachKey_AndNoDeletedKeys_WhenNothingWasCompacted()
    {
        using var dir = new TempDir();
        var kv = Path.Combine(dir.Path, "kv");
        var model = new Dictionary<string, string>(StringComparer.Ordinal);
        Dictionary<string, string> persisted;
        using (var store = StateStore.Open(kv, Segment))
        {
            store.CompactionMinBytes = long.MaxValue; // never: every version and tombstone stays in the log
            for (var round = 0; round < 6; round++)
            {
                Checkpoint(store, model, round, tail: 1000 + round);
                await store.PersistAsync();
            }
            Assert.Equal(0, store.Compactions);
            persisted = new Dictionary<string, string>(model, StringComparer.Ordinal);
            // Written and sealed but never persisted (a crash before the FASTER checkpoint): recovery must not see it.
            Checkpoint(store, model, round: 6, tail: 2000);
        }

        model = persisted;
        long expectedAddress = 1005;
        for (var restart = 0; restart < 4; restart++)
        {
            // Recover, compare, then keep working on the recovered store: rewrites and deletes (the deletes
            // need the loaded key set), persisted, closed, recovered again.
            using var store = StateStore.Open(kv, Segment);
            Assert.True(store.Recovered);
            var (address, loaded) = LoadAll(store);
            Assert.Equal(expectedAddress, address);
            AssertSameState(model, loaded);
            Assert.Equal(model.Count, store.Count);

            store.CompactionMinBytes = long.MaxValue;
            for (var round = 10 * (restart + 1); round < 10 * (restart + 1) + 1 + restart % 2; round++)
            {
                expectedAddress = 3000 + round;
                Checkpoint(store, model, round, expectedAddress);
                await store.PersistAsync();
            }
            Assert.Equal(0, store.Compactions);
        }
    }

    [Fact]
    public async Task Load_AfterEachOfSeveralRestarts_SeesTheLastPersistedVersion_WithDefaultSettings()
    {
        // The engine's pattern: open, recover, load, one checkpoint rewriting every key, close; repeated. Below the
        // default compaction threshold, so the log keeps every version (FASTER's own Iterate() returned a stale
        // version of "a" on the third open here).
        using var dir = new TempDir();
        var kv = Path.Combine(dir.Path, "kv");
        for (var open = 1; open <= 5; open++)
        {
            using var store = StateStore.Open(kv);
            Assert.Equal(open > 1, store.Recovered);
            var (address, loaded) = LoadAll(store);
            Assert.Equal(open - 1, address);
            if (open > 1)
            {
                Assert.Equal($"a={open - 1}", loaded["A" + Id(2) + "2a"]);
                Assert.Equal(open > 3 ? 4 : 5, loaded.Count);
                Assert.Equal(open > 3, !loaded.ContainsKey("A" + Id(2) + "2b"));
            }
            store.BeginCheckpoint();
            Write(store, "N" + Id(1), Tenant, "tenant");
            Write(store, "D" + Id(2), Tenant, "device");
            Write(store, "A" + Id(2) + "2c", Telemetry, "c");
            if (open < 3)
            {
                Write(store, "A" + Id(2) + "2b", Telemetry, "b");
            }
            Write(store, "A" + Id(2) + "2a", Telemetry, $"a={open}");
            store.Seal(open);
            await store.PersistAsync();
            Assert.Equal(0, store.Compactions);
        }
    }

    [Fact]
    public async Task Load_ReadsRecordsThatAreOnlyOnDisk()
    {
        // 48 MiB of records in a store that keeps 32 MiB in memory: after recovery the first ones are read from disk
        // (pending reads), then a second version of half of them (so both versions of those are in the log).
        using var dir = new TempDir();
        var kv = Path.Combine(dir.Path, "kv");
        var body = new string('d', 40_000);
        const int Keys = 1200;
        using (var store = StateStore.Open(kv))
        {
            store.CompactionMinBytes = long.MaxValue;
            for (var version = 1; version <= 2; version++)
            {
                store.BeginCheckpoint();
                for (var i = 0; i < Keys; i++)
                {
                    var key = $"H{Id(i)}";
                    if (version == 2 && i % 2 == 1)
                    {
                        store.Retain(key);
                        continue;
                    }
                    Write(store, key, Telemetry, $"v{version}:{body}");
                }
                store.Seal(version);
                await store.PersistAsync();
            }
            Assert.Equal(0, store.Compactions);
        }

        using var reopened = StateStore.Open(kv);
        var (address, loaded) = LoadAll(reopened);
        Assert.Equal(2, address);
        Assert.True(reopened.DiskReads > 0, "no record was read from disk");
        Assert.Equal(Keys, loaded.Count);
        for (var i = 0; i < Keys; i++)
        {
            Assert.Equal($"v{(i % 2 == 0 ? 2 : 1)}:{body}", loaded[$"H{Id(i)}"]);
        }
    }

    [Fact]
    public async Task Load_IsTheSame_WhetherOrNotCompactionRan()
    {
        using var compacted = new TempDir();
        using var uncompacted = new TempDir();
        var models = new List<Dictionary<string, string>>();
        foreach (var (dir, minBytes) in new[] { (compacted, 0L), (uncompacted, long.MaxValue) })
        {
            var model = new Dictionary<string, string>(StringComparer.Ordinal);
            using (var store = StateStore.Open(Path.Combine(dir.Path, "kv"), Segment))
            {
                store.CompactionMinBytes = minBytes;
                store.CompactionGrowth = 0; // with minBytes 0: compact at every checkpoint
                for (var round = 0; round < 8; round++)
                {
                    Checkpoint(store, model, round, tail: round);
                    await store.PersistAsync();
                }
                Assert.Equal(minBytes == 0 ? 7 : 0, store.Compactions); // the first has nothing before it to compact
            }
            using (var store = StateStore.Open(Path.Combine(dir.Path, "kv"), Segment))
            {
                var (_, loaded) = LoadAll(store);
                AssertSameState(model, loaded);
            }
            models.Add(model);
        }
        Assert.Equal(models[0], models[1]);
    }

    [Fact]
    public async Task ManyCheckpointsOfAFixedSizeState_KeepTheLogAndItsFilesBounded()
    {
        using var dir = new TempDir();
        var kv = Path.Combine(dir.Path, "kv");
        const int Keys = 200;
        const int Checkpoints = 150;
        var value = new string('v', 2000);
        long maxFiles = 0;
        int compactions;
        using (var store = StateStore.Open(kv, Segment))
        {
            store.CompactionMinBytes = 1L << 20;
            for (var round = 0; round < Checkpoints; round++)
            {
                store.BeginCheckpoint();
                for (var i = 0; i < Keys; i++)
                {
                    Write(store, $"H{i:d4}", Telemetry, $"{round}:{value}");
                }
                store.Seal(round);
                await store.PersistAsync();
                // Live state about 0.4 MiB, rewritten every time: about 60 MiB written in all.
                Assert.InRange(store.LogBytes, 0, 3L << 20);
                maxFiles = Math.Max(maxFiles, FileBytes(kv));
            }
            compactions = store.Compactions;
        }
        Assert.InRange(compactions, Checkpoints / 5, Checkpoints / 2); // amortized, yet it runs
        // At most the log's span (< 3 MiB) over two 4 MiB segment files, plus checkpoint metadata.
        Assert.InRange(maxFiles, 1, 3 * Segment);

        using var reopened = StateStore.Open(kv, Segment);
        var (address, loaded) = LoadAll(reopened);
        Assert.Equal(Checkpoints - 1, address);
        Assert.Equal(Keys, loaded.Count);
        Assert.All(loaded, r => Assert.Equal($"{Checkpoints - 1}:{value}", r.Value));
    }

    [Fact]
    public async Task RetainedState_IsCompactedRarely_WhileChangesAreCheckpointed()
    {
        using var dir = new TempDir();
        var kv = Path.Combine(dir.Path, "kv");
        var chunk = new string('c', 4000);
        const int Checkpoints = 60;
        using (var store = StateStore.Open(kv, Segment))
        {
            store.CompactionMinBytes = 64 << 10;
            for (var round = 0; round < Checkpoints; round++)
            {
                // Like telemetry history: all earlier chunks retained, one new chunk and the latest value written.
                store.BeginCheckpoint();
                for (var c = 0; c < round; c++)
                {
                    store.Retain($"H{c:d4}");
                }
                Write(store, $"H{round:d4}", Telemetry, $"{round}:{chunk}");
                Write(store, "Llatest", Telemetry, $"latest {round}");
                store.Seal(round);
                await store.PersistAsync();
            }
            // Each checkpoint appends about 4 KB of new history, which stays live: the log only doubles a few
            // times (64 KiB, then twice what was live), while compacting at every checkpoint would have copied
            // all retained chunks 59 times.
            Assert.InRange(store.Compactions, 1, 4);
        }

        using var reopened = StateStore.Open(kv, Segment);
        var (_, loaded) = LoadAll(reopened);
        Assert.Equal(Checkpoints + 1, loaded.Count);
        Assert.Equal("latest 59", loaded["Llatest"]);
        Assert.Equal($"0:{chunk}", loaded["H0000"]);
        Assert.Equal($"59:{chunk}", loaded["H0059"]);
    }

    /// <summary>A fixed 32-hex-digit id, the shape of the engine's keys.</summary>
    private static string Id(int n) => new Guid(n, 0x1234, 0x5678, [1, 2, 3, 4, 5, 6, 7, 8]).ToString("N");

    private const byte Telemetry = 12; // RecordKind.Telemetry
    private const byte Tenant = 1;     // RecordKind.Tenant (a registry record: loaded in the first pass)

    /// <summary>
    /// One checkpoint round over a small mixed state: registry keys always rewritten, telemetry keys rewritten
    /// with a new value, retained, deleted (absent from the round) and re-created in a pattern that changes per
    /// round; <paramref name="model"/> follows what the store should hold.
    /// </summary>
    private static void Checkpoint(StateStore store, Dictionary<string, string> model, int round, long tail)
    {
        store.BeginCheckpoint();
        var next = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < 5; i++)
        {
            var key = "N" + Id(i);
            next[key] = $"tenant {i} round {round}";
            Write(store, key, Tenant, next[key]);
        }
        for (var i = 0; i < 40; i++)
        {
            var key = $"H{Id(100 + i)}{i:d3}";
            switch ((i + round) % 4)
            {
                case 0: // deleted this round (absent)
                    break;
                case 1 when model.TryGetValue(key, out var kept): // unchanged: retained, not rewritten
                    store.Retain(key);
                    next[key] = kept;
                    break;
                default:
                    next[key] = $"{key} round {round} " + new string('x', (i * 37 + round * 11) % 300);
                    Write(store, key, Telemetry, next[key]);
                    break;
            }
        }
        store.Seal(tail);
        model.Clear();
        foreach (var (key, value) in next)
        {
            model[key] = value;
        }
    }

    /// <summary>A record: its kind byte, then "key|text" so that a loaded record says which key it came from.</summary>
    private static void Write(StateStore store, string key, byte kind, string text)
    {
        var w = new RecordWriter((RecordKind)kind);
        w.WriteRaw(Encoding.UTF8.GetBytes(key + "|" + text));
        store.Write(key, ref w);
    }

    private static (long Address, Dictionary<string, string> Records) LoadAll(StateStore store)
    {
        var records = new Dictionary<string, string>(StringComparer.Ordinal);
        var registryDone = false;
        var address = store.Load(record =>
        {
            var registry = record[0] == Tenant;
            Assert.False(registry && registryDone, "a registry record loaded after a non-registry one");
            registryDone |= !registry;
            var text = Encoding.UTF8.GetString(record[1..]);
            var bar = text.IndexOf('|', StringComparison.Ordinal);
            Assert.True(records.TryAdd(text[..bar], text[(bar + 1)..]), $"key {text[..bar]} loaded twice");
        }, out var count);
        Assert.Equal(records.Count, count);
        return (address, records);
    }

    private static void AssertSameState(Dictionary<string, string> expected, Dictionary<string, string> loaded)
    {
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), loaded.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, value) in expected)
        {
            Assert.Equal(value, loaded[key]);
        }
    }

    /// <summary>Bytes in the files under <paramref name="directory"/>; FASTER deletes old segments in the background, so a listed file may be gone.</summary>
    private static long FileBytes(string directory)
    {
        long total = 0;
        foreach (var file in Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories))
        {
            try
            {
                total += new FileInfo(file).Length;
            }
            catch (FileNotFoundException)
            {
                // FASTER deleted the segment between the listing and this read: it no longer takes space.
            }
        }
        return total;
    }
}
