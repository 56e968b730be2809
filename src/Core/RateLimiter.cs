using System.Diagnostics;
using System.Globalization;

namespace Perf.Core;

/// <summary>
/// A parsed rate limit in the reference's format <c>"20:1,600:60"</c>: a comma-separated list of
/// <c>capacity:seconds</c> windows that must all hold (here 20 per second and 600 per minute).
/// </summary>
public sealed class RateLimit
{
    private RateLimit(string text, (long Capacity, long Seconds)[] windows)
    {
        Text = text;
        Windows = windows;
    }

    /// <summary>The limit as configured, for logs and <c>getSessionLimits</c>.</summary>
    public string Text { get; }

    public IReadOnlyList<(long Capacity, long Seconds)> Windows { get; }

    /// <summary>Parses <paramref name="text"/>; null or blank means no limit (<paramref name="limit"/> null, returns true).</summary>
    public static bool TryParse(string? text, out RateLimit? limit, out string? error)
    {
        limit = null;
        error = null;
        if (string.IsNullOrWhiteSpace(text))
        {
            return true;
        }

        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var windows = new (long, long)[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            var pair = parts[i].Split(':', StringSplitOptions.TrimEntries);
            if (pair.Length != 2
                || !long.TryParse(pair[0], NumberStyles.None, CultureInfo.InvariantCulture, out long capacity)
                || !long.TryParse(pair[1], NumberStyles.None, CultureInfo.InvariantCulture, out long seconds)
                || capacity <= 0 || seconds <= 0)
            {
                error = $"rate limit '{text}': '{parts[i]}' is not capacity:seconds with both positive (example \"20:1,600:60\")";
                return false;
            }

            windows[i] = (capacity, seconds);
        }

        if (windows.Length == 0)
        {
            return true;
        }

        limit = new RateLimit(text.Trim(), windows);
        return true;
    }

    /// <summary>Parses <paramref name="text"/> or throws <see cref="FormatException"/>; null for no limit.</summary>
    public static RateLimit? Parse(string? text) =>
        TryParse(text, out var limit, out var error) ? limit : throw new FormatException(error);

    /// <summary>A fresh limiter with every window full.</summary>
    public RateLimiter CreateLimiter() => new(this);

    public override string ToString() => Text;
}

/// <summary>
/// Token buckets for every window of a <see cref="RateLimit"/>, refilled continuously (a window of
/// 600:60 regains one token every 100 ms) and taken from all at once or not at all. Thread-safe
/// (one limiter may be shared by a tenant's connections) and allocation-free per call.
/// </summary>
public sealed class RateLimiter
{
    private readonly Lock _lock = new();
    private readonly RateLimit _limit;
    private readonly Bucket[] _buckets;

    internal RateLimiter(RateLimit limit, long? startTimestamp = null)
    {
        _limit = limit;
        long now = startTimestamp ?? Stopwatch.GetTimestamp();
        _buckets = new Bucket[limit.Windows.Count];
        for (int i = 0; i < _buckets.Length; i++)
        {
            var (capacity, seconds) = limit.Windows[i];
            _buckets[i] = new Bucket
            {
                Capacity = capacity,
                // Ticks of the Stopwatch clock per token regained.
                TicksPerToken = (double)seconds * Stopwatch.Frequency / capacity,
                Tokens = capacity,
                LastRefill = now,
            };
        }
    }

    public RateLimit Limit => _limit;

    /// <summary>Takes <paramref name="count"/> tokens from every window; false (taking nothing) when any window lacks them.</summary>
    public bool TryAcquire(int count = 1) => TryAcquire(Stopwatch.GetTimestamp(), count);

    /// <summary>As <see cref="TryAcquire(int)"/> at a given <see cref="Stopwatch.GetTimestamp"/> value (tests drive the clock).</summary>
    public bool TryAcquire(long timestamp, int count)
    {
        lock (_lock)
        {
            var buckets = _buckets.AsSpan();
            for (int i = 0; i < buckets.Length; i++)
            {
                ref var b = ref buckets[i];
                long elapsed = timestamp - b.LastRefill;
                if (elapsed > 0)
                {
                    b.Tokens = Math.Min(b.Capacity, b.Tokens + (elapsed / b.TicksPerToken));
                    b.LastRefill = timestamp;
                }

                if (b.Tokens < count)
                {
                    return false;
                }
            }

            for (int i = 0; i < buckets.Length; i++)
            {
                buckets[i].Tokens -= count;
            }

            return true;
        }
    }

    private struct Bucket
    {
        public long Capacity;
        public double TicksPerToken;
        public double Tokens;
        public long LastRefill;
    }
}
