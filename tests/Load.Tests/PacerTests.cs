using System.Diagnostics;

namespace Perf.Load.Tests;

public sealed class PacerTests
{
    /// <summary>
    /// 256 workers sharing 5,000/s: their sends interleave one every 0.2 ms instead of all 256 being due at
    /// the same instant once per period (the burst that made rpc's paced latency the queue behind it).
    /// </summary>
    [Fact]
    public async Task WorkersSharingARate_AreDueEvenlySpread_NotAllAtOnce()
    {
        const int workers = 256;
        const double total = 5000;
        var clock = Stopwatch.StartNew();
        var pacers = Enumerable.Range(0, workers).Select(w => new Pacer(total / workers, clock, Pacer.PhaseOf(w, workers))).ToArray();
        var dues = pacers.Select(p => p.NextDue).Order().ToArray();
        Assert.Equal(0, dues[0]);
        for (int i = 1; i < dues.Length; i++)
        {
            Assert.Equal(1 / total, dues[i] - dues[i - 1], 9);
        }

        // Worker 0's first send is due at once; its next one a whole period (workers / total) later.
        Assert.True(pacers[0].WaitTurnAsync(1, CancellationToken.None).AsTask().IsCompletedSuccessfully);
        Assert.Equal(workers / total, pacers[0].NextDue, 9);
        await Task.CompletedTask;
    }

    [Fact]
    public void PhaseOf_SpreadsWorkersOverOnePeriod()
    {
        Assert.Equal(0, Pacer.PhaseOf(0, 1));
        Assert.Equal(0, Pacer.PhaseOf(0, 4));
        Assert.Equal(0.25, Pacer.PhaseOf(1, 4));
        Assert.Equal(0.75, Pacer.PhaseOf(3, 4));
    }

    [Fact]
    public async Task NoRate_NeverWaits()
    {
        var pacer = new Pacer(0, Stopwatch.StartNew());
        for (int i = 0; i < 1000; i++)
        {
            Assert.True(pacer.WaitTurnAsync(1, CancellationToken.None).AsTask().IsCompletedSuccessfully);
        }

        Assert.Equal(0, pacer.NextDue);
        await Task.CompletedTask;
    }
}
