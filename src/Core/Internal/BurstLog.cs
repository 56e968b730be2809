using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Perf.Core.Internal;

/// <summary>
/// Aggregated warnings for events that come in floods (refused connections, protocol violations): the
/// first event of a burst is one Warning with its detail, then one summary Warning per interval while
/// events keep coming ("N more ... in the last 10 s"); a quiet interval ends the burst. The keys are the
/// callers' fixed descriptions (door and kind), so the table stays small.
/// </summary>
internal sealed class BurstLog : IDisposable
{
    private readonly ILogger _logger;
    private readonly TimeSpan _interval;
    private readonly ConcurrentDictionary<(string Door, string Kind), Burst> _bursts = new();

    public BurstLog(ILogger logger, TimeSpan interval)
    {
        _logger = logger;
        _interval = interval;
    }

    public void Report(string door, string kind, string detail)
    {
        var burst = _bursts.GetOrAdd((door, kind), static (k, self) => new Burst(self, k.Door, k.Kind), this);
        Interlocked.Increment(ref burst.Count);
        if (Interlocked.CompareExchange(ref burst.Armed, 1, 0) == 0)
        {
            // This event is reported by itself; the summary counts the ones after it.
            Interlocked.Decrement(ref burst.Count);
            GuardLog.BurstStarted(_logger, door, kind, detail, _interval.TotalSeconds);
            burst.Timer.Change(_interval, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>True while a burst of <paramref name="kind"/> at <paramref name="door"/> is open (its summary timer armed).</summary>
    public bool IsOpen(string door, string kind) =>
        _bursts.TryGetValue((door, kind), out var burst) && Volatile.Read(ref burst.Armed) == 1;

    private void Tick(Burst burst)
    {
        long count = Interlocked.Exchange(ref burst.Count, 0);
        if (count > 0)
        {
            GuardLog.BurstSummary(_logger, burst.Door, count, burst.Kind, _interval.TotalSeconds);
            burst.Timer.Change(_interval, Timeout.InfiniteTimeSpan);
            return;
        }

        Volatile.Write(ref burst.Armed, 0);
    }

    public void Dispose()
    {
        foreach (var burst in _bursts.Values)
        {
            burst.Timer.Dispose();
        }
    }

    private sealed class Burst
    {
        public long Count;
        public int Armed;

        public Burst(BurstLog owner, string door, string kind)
        {
            Door = door;
            Kind = kind;
            Timer = new Timer(static state => { var (o, b) = ((BurstLog, Burst))state!; o.Tick(b); }, (owner, this), Timeout.Infinite, Timeout.Infinite);
        }

        public string Door { get; }
        public string Kind { get; }
        public Timer Timer { get; }
    }
}
