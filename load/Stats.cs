using System.Diagnostics;
using HdrHistogram;

namespace Perf.Load;

/// <summary>
/// Counters of one worker (connection). Each field has a single writer, so the hot path does plain
/// increments; the progress loop sums them with volatile reads (no shared, contended cache line).
/// </summary>
public sealed class WorkerCounters
{
    public long Sent;
    public long Acked;
    public long Errors;
}

/// <summary>A point of the throughput-over-time series: what happened during one interval.</summary>
public readonly record struct SeriesPoint(double ElapsedSeconds, long Sent, long Acked, long Errors);

/// <summary>
/// Latency in microseconds, recorded into a few lock-guarded HdrHistogram shards (a connection records a
/// whole read's worth of acks under one lock), merged at the end.
/// </summary>
public sealed class LatencyRecorder
{
    /// <summary>60 s: anything slower is recorded as 60 s.</summary>
    public const long HighestTrackableMicros = 60_000_000;

    private readonly LongHistogram[] _shards;

    public LatencyRecorder(int shards = 8)
    {
        _shards = new LongHistogram[Math.Max(1, shards)];
        for (var i = 0; i < _shards.Length; i++)
        {
            _shards[i] = NewHistogram();
        }
    }

    public static LongHistogram NewHistogram() => new(1, HighestTrackableMicros, 3);

    public static long TicksToMicros(long ticks) => ticks * 1_000_000 / Stopwatch.Frequency;

    public LongHistogram Shard(int worker) => _shards[worker % _shards.Length];

    /// <summary>Records latencies (Stopwatch ticks) for a worker; callers batch.</summary>
    public void RecordTicks(int worker, ReadOnlySpan<long> ticks)
    {
        var shard = Shard(worker);
        lock (shard)
        {
            foreach (var t in ticks)
            {
                shard.RecordValue(Math.Clamp(TicksToMicros(t), 1, HighestTrackableMicros));
            }
        }
    }

    public void RecordTicks(int worker, long ticks) => RecordTicks(worker, new ReadOnlySpan<long>(in ticks));

    public LongHistogram Merge()
    {
        var merged = NewHistogram();
        foreach (var shard in _shards)
        {
            lock (shard)
            {
                merged.Add(shard);
            }
        }

        return merged;
    }
}

/// <summary>
/// Once a second: sums the workers' counters, prints a progress line on stderr and appends a point to
/// the throughput series.
/// </summary>
public sealed class ProgressMonitor : IAsyncDisposable
{
    private readonly Func<IEnumerable<WorkerCounters>> _workers;
    private readonly string _ackName;
    private readonly TimeSpan _planned;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private (long Sent, long Acked, long Errors) _last;
    private double _lastElapsed;

    public ProgressMonitor(Func<IEnumerable<WorkerCounters>> workers, string ackName, TimeSpan planned)
    {
        _workers = workers;
        _ackName = ackName;
        _planned = planned;
        _loop = Task.Run(LoopAsync);
    }

    public List<SeriesPoint> Series { get; } = [];

    public double ElapsedSeconds => _clock.Elapsed.TotalSeconds;

    public (long Sent, long Acked, long Errors) Totals()
    {
        long sent = 0, acked = 0, errors = 0;
        foreach (var w in _workers())
        {
            sent += Volatile.Read(ref w.Sent);
            acked += Volatile.Read(ref w.Acked);
            errors += Volatile.Read(ref w.Errors);
        }

        return (sent, acked, errors);
    }

    private async Task LoopAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                Tick();
            }
        }
        catch (OperationCanceledException)
        {
            // Stopped.
        }
    }

    private void Tick()
    {
        var elapsed = _clock.Elapsed.TotalSeconds;
        var now = Totals();
        var interval = Math.Max(1e-6, elapsed - _lastElapsed);
        var point = new SeriesPoint(elapsed, now.Sent - _last.Sent, now.Acked - _last.Acked, now.Errors - _last.Errors);
        lock (Series)
        {
            Series.Add(point);
        }

        Console.Error.WriteLine(
            $"[{elapsed,6:F1}s/{_planned.TotalSeconds:F0}s] sent {now.Sent,12:N0}  {_ackName} {now.Acked,12:N0}  rate {point.Acked / interval,12:N0}/s  errors {now.Errors:N0}");
        _last = now;
        _lastElapsed = elapsed;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }
}
