using System.Diagnostics;

namespace Perf.Load;

/// <summary>
/// Spaces one worker's sends to <c>rate</c> per second (0: no pacing). Catches up in bursts when late.
/// </summary>
/// <remarks>
/// <paramref name="phase"/> (0 to 1, a fraction of one period) shifts this worker's schedule: workers
/// <c>w</c> of <c>n</c> sharing a total rate pass <c>w / n</c> (<see cref="PhaseOf"/>), so their sends
/// interleave evenly. Without it every worker's k-th send is due at the same instant k / rate, and
/// <c>n</c> calls leave together once per period: with 256 workers at 5,000/s in total that is a burst of
/// 256 calls every 51 ms, and the measured latency was the queue behind the burst (p50 12.6 ms on an
/// otherwise idle RPC path), not the server's.
/// </remarks>
public sealed class Pacer(double ratePerSecond, Stopwatch clock, double phase = 0)
{
    private long _issued;

    /// <summary>The phase of worker <paramref name="worker"/> of <paramref name="workers"/>: evenly spread over one period.</summary>
    public static double PhaseOf(int worker, int workers) => workers <= 1 ? 0 : (double)(worker % workers) / workers;

    /// <summary>When (seconds since the clock started) this worker's next send is due.</summary>
    public double NextDue => ratePerSecond <= 0 ? 0 : (_issued + phase) / ratePerSecond;

    public async ValueTask WaitTurnAsync(int count, CancellationToken cancellation)
    {
        if (ratePerSecond <= 0)
        {
            return;
        }

        var due = NextDue;
        _issued += count;
        var delay = due - clock.Elapsed.TotalSeconds;
        if (delay > 0.001)
        {
            await Task.Delay(TimeSpan.FromSeconds(delay), cancellation);
        }
    }
}
