using System.Diagnostics;

namespace Perf.Load;

/// <summary>Spaces one worker's sends to <c>rate</c> per second (0: no pacing). Catches up in bursts when late.</summary>
public sealed class Pacer(double ratePerSecond, Stopwatch clock)
{
    private long _issued;

    public async ValueTask WaitTurnAsync(int count, CancellationToken cancellation)
    {
        if (ratePerSecond <= 0)
        {
            return;
        }

        var due = _issued / ratePerSecond;
        _issued += count;
        var delay = due - clock.Elapsed.TotalSeconds;
        if (delay > 0.001)
        {
            await Task.Delay(TimeSpan.FromSeconds(delay), cancellation);
        }
    }
}
