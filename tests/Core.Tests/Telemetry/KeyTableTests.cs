using System.Text;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests.Telemetry;

public class KeyTableTests
{
    [Fact]
    public void Intern_ReturnsTheSameInstance_ForEqualKeysGivenAsBytesOrStrings()
    {
        var keys = new KeyTable();
        string fromBytes = keys.Intern("temperature"u8);
        string fromString = keys.Intern(new string("temperature".AsSpan()));
        string again = keys.Intern("temperature"u8);

        Assert.Equal("temperature", fromBytes);
        Assert.Same(fromBytes, fromString);
        Assert.Same(fromBytes, again);
    }

    [Fact]
    public void Intern_KeepsTheCallersString_WhenTheKeyIsNew()
    {
        var keys = new KeyTable();
        string key = new("humidity".AsSpan());

        Assert.Same(key, keys.Intern(key));
        Assert.Same(key, keys.Intern("humidity"u8));
    }

    [Fact]
    public void Count_CountsDistinctKeysOnly()
    {
        var keys = new KeyTable();
        keys.Intern("a"u8);
        keys.Intern("b");
        keys.Intern("a");
        keys.Intern("b"u8);

        Assert.Equal(2, keys.Count);
    }

    [Fact]
    public void Intern_KeepsEveryKey_WhenTheTableGrowsFarPastItsInitialCapacity()
    {
        var keys = new KeyTable(capacity: 16);
        string[] first = Enumerable.Range(0, 10_000).Select(i => keys.Intern("key" + i)).ToArray();

        Assert.Equal(10_000, keys.Count);
        for (int i = 0; i < first.Length; i++)
        {
            Assert.Same(first[i], keys.Intern(Encoding.UTF8.GetBytes("key" + i)));
        }
    }

    [Fact]
    public void Intern_TreatsNonAsciiKeysByTheirUtf8Bytes()
    {
        var keys = new KeyTable();
        string key = keys.Intern("température"u8);

        Assert.Equal("température", key);
        Assert.Same(key, keys.Intern("température"));
        Assert.NotSame(key, keys.Intern("temperature"));
    }

    [Fact]
    public void Intern_RejectsBytesThatAreNotUtf8()
    {
        var keys = new KeyTable();

        Assert.ThrowsAny<ArgumentException>(() => keys.Intern([0x61, 0xFF, 0x62]));
        Assert.Equal(0, keys.Count);
    }

    [Fact]
    public void Intern_RejectsAStringWithAnUnpairedSurrogate()
    {
        var keys = new KeyTable();

        Assert.ThrowsAny<ArgumentException>(() => keys.Intern("a\uD800b"));
    }

    [Fact]
    public void Intern_DoesNotAllocate_ForAKeySeenBefore()
    {
        var keys = new KeyTable();
        keys.Intern("temperature"u8);
        keys.Intern("temperature"u8);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            keys.Intern("temperature"u8);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Intern_ReturnsOneInstancePerKey_WhenSeveralThreadsInternTheSameKeysAtOnce()
    {
        const int Threads = 4;
        const int KeyCount = 5_000;
        var keys = new KeyTable(capacity: 16); // small, so the threads race through several resizes
        byte[][] utf8 = Enumerable.Range(0, KeyCount).Select(i => Encoding.UTF8.GetBytes("sensor/" + i)).ToArray();
        var results = new string[Threads][];
        using var start = new Barrier(Threads);

        Thread[] threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            var mine = new string[KeyCount];
            start.SignalAndWait();
            for (int n = 0; n < KeyCount; n++)
            {
                // Each thread walks the keys in a different order so inserts and lookups interleave.
                int i = (t % 2 == 0 ? n : KeyCount - 1 - n);
                mine[i] = t == 3 ? keys.Intern("sensor/" + i) : keys.Intern(utf8[i]);
            }

            results[t] = mine;
        })).ToArray();
        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        foreach (Thread thread in threads)
        {
            thread.Join();
        }

        Assert.Equal(KeyCount, keys.Count);
        for (int i = 0; i < KeyCount; i++)
        {
            Assert.Equal("sensor/" + i, results[0][i]);
            for (int t = 1; t < Threads; t++)
            {
                Assert.Same(results[0][i], results[t][i]);
            }

            Assert.Same(results[0][i], keys.Intern(utf8[i]));
        }
    }
}
