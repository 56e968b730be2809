using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests;

/// <summary>
/// A driving thread (the MQTT door's epoll thread) commits what it queued itself: nothing is committed until its
/// <see cref="CommitRounds.RunDeferred"/>, which commits, applies and completes the uplinks there, the oldest last.
/// </summary>
public class CommitRoundsTests
{
    private const int Uplinks = 20;

    [Fact]
    public async Task DrivingThread_CommitsItsUplinksInRunDeferred_AndTheirContinuationsRunThere_OldestLast()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);

        var outcome = await OnDrivingThreadAsync(() =>
        {
            var driver = Environment.CurrentManagedThreadId;
            var uplinks = Queue(engine, device);
            var completedBeforeRound = uplinks.Count(u => u.IsCompleted);

            var order = new List<int>();
            var ranOnDriver = true;
            var laterOnesDoneWhenOldestRan = false;
            var results = new UplinkResult[Uplinks];
            for (int i = 0; i < Uplinks; i++)
            {
                int index = i;
                var awaiter = uplinks[i].GetAwaiter();
                awaiter.UnsafeOnCompleted(() =>
                {
                    ranOnDriver &= Environment.CurrentManagedThreadId == driver;
                    if (index == 0)
                    {
                        laterOnesDoneWhenOldestRan = order.Count == Uplinks - 1;
                    }
                    order.Add(index);
                    results[index] = awaiter.GetResult();
                });
            }

            CommitRounds.RunDeferred();
            return (completedBeforeRound, order, ranOnDriver, laterOnesDoneWhenOldestRan, results);
        });

        Assert.Equal(0, outcome.completedBeforeRound);
        Assert.Equal(Uplinks, outcome.order.Count);
        Assert.True(outcome.ranOnDriver, "an inline uplink's continuation ran off the driving thread");
        Assert.True(outcome.laterOnesDoneWhenOldestRan, "the oldest uplink was completed before the later ones");
        Assert.All(outcome.results, r => Assert.True(r.IsOk, r.Reason));
        Assert.Equal(Uplinks, engine.Telemetry.Query(device.Id, "v", 0, 100_000, 0, 1000, Aggregation.None, false).Count);

        // Acknowledged means durable: a crash right after the round loses none of them.
        await engine.AbandonAsync();
        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(Uplinks, reopened.Telemetry.Query(device.Id, "v", 0, 100_000, 0, 1000, Aggregation.None, false).Count);
    }

    [Fact]
    public async Task UplinksADrivingThreadLeftQueued_AreCommittedByTheStop()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);

        // The driving thread queues and ends without a round: the commit thread's last rounds at stop take them.
        var uplinks = await OnDrivingThreadAsync(() => Queue(engine, device).Select(u => u.AsTask()).ToArray());
        Assert.All(uplinks, u => Assert.False(u.IsCompleted));
        await engine.DisposeAsync();
        Assert.All(await Task.WhenAll(uplinks), r => Assert.True(r.IsOk, r.Reason));

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(Uplinks, reopened.Telemetry.Query(device.Id, "v", 0, 100_000, 0, 1000, Aggregation.None, false).Count);
    }

    [Fact]
    public async Task RecordsFromOtherThreads_AreCommittedByTheCommitThread_WhichTakesADrivingThreadsQueuedOnesToo()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var queued = new TaskCompletionSource<ValueTask<UplinkResult>[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new ManualResetEventSlim();
        var driving = OnDrivingThreadAsync(() =>
        {
            queued.SetResult(Queue(engine, device));
            release.Wait();
            CommitRounds.RunDeferred();
            return true;
        });
        var held = await queued.Task;
        Assert.All(held, u => Assert.False(u.IsCompleted));

        // An uplink from this (non-driving) thread wakes the commit thread: its round takes the whole queue, so the
        // driving thread's uplinks, queued before it, are committed and completed before it is.
        Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("""{"ts":500000,"values":{"w":1}}"""))).IsOk);
        Assert.All(held, u => Assert.True(u.IsCompleted));
        release.Set();
        Assert.True(await driving);
        foreach (var uplink in held)
        {
            var result = await uplink;
            Assert.True(result.IsOk, result.Reason);
        }
        Assert.Equal(Uplinks, engine.Telemetry.Query(device.Id, "v", 0, 100_000, 0, 1000, Aggregation.None, false).Count);
    }

    [Fact]
    public async Task ARecordLargerThanAPage_IsRefusedAlone_AndTheRecordsAroundItAreKept()
    {
        // Enqueued, a record larger than a log page threw inside the commit round and failed every record of it (an
        // edge's 3 MB value took other devices' uplinks down with it). It is refused when appended now.
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var before = engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(1, new KvEntry("small", 1L))]);
        var huge = engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(2, new KvEntry("huge", new string('x', 3 << 20)))]);
        var after = engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(3, new KvEntry("small", 3L))]);

        var refused = await Assert.ThrowsAsync<InvalidDataException>(() => huge);
        Assert.Contains("larger than the largest the log takes", refused.Message, StringComparison.Ordinal);
        Assert.True(await before);
        Assert.True(await after);
        Assert.Equal(3L, Assert.Single(engine.Telemetry.GetLatest(device.Id, ["small"])).Entry.LongValue);
        Assert.Empty(engine.Telemetry.GetLatest(device.Id, ["huge"]));
        Assert.True(await engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(4, new KvEntry("big", new string('y', 1 << 20)))])); // a page holds 1 MiB
    }

    private static ValueTask<UplinkResult>[] Queue(PerfEngine engine, Device device)
    {
        var uplinks = new ValueTask<UplinkResult>[Uplinks];
        for (int i = 0; i < Uplinks; i++)
        {
            // Kept to look at their completion before each is consumed exactly once.
#pragma warning disable CA2012
            uplinks[i] = engine.DeviceApi.PostTelemetryAsync(device, Engines.Json($"{{\"ts\":{1000 + i},\"values\":{{\"v\":{i}}}}}"));
#pragma warning restore CA2012
        }
        return uplinks;
    }

    /// <summary>Runs <paramref name="body"/> on a new thread made a driving thread (it stays one for its life).</summary>
    private static Task<T> OnDrivingThreadAsync<T>(Func<T> body)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                CommitRounds.Drive();
                Assert.True(CommitRounds.IsDriving);
                done.SetResult(body());
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        })
        { IsBackground = true, Name = "Test driving thread" };
        thread.Start();
        return done.Task;
    }
}
