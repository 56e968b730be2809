using System.Diagnostics.Metrics;

namespace Perf.Core;

/// <summary>
/// A counter for per-message paths. <see cref="Add"/> is one interlocked add into the slot of a tag set
/// chosen by index; the meter reads the slots only when it is observed (at each <c>/metrics</c> scrape or
/// <c>dotnet-counters</c> interval), as an <see cref="ObservableCounter{T}"/> of running totals. A plain
/// <see cref="Counter{T}"/> instead calls every listener on every <c>Add</c>; the Prometheus adapter's
/// per-measurement label lookup showed in the per-message CPU profile. A slot is reported once it is non-zero.
/// </summary>
public sealed class ObservedCounter
{
    private readonly long[] _totals;
    private readonly KeyValuePair<string, object?>[][] _tags;

    /// <param name="tags">One tag set per slot; <c>[[]]</c> for an untagged counter.</param>
    public ObservedCounter(Meter meter, string name, KeyValuePair<string, object?>[][] tags, string? unit = null, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(meter);
        ArgumentNullException.ThrowIfNull(tags);
        _tags = tags;
        _totals = new long[tags.Length];
        meter.CreateObservableCounter(name, Observe, unit, description);
    }

    /// <summary>An untagged counter.</summary>
    public ObservedCounter(Meter meter, string name, string? unit = null, string? description = null)
        : this(meter, name, [[]], unit, description)
    {
    }

    public void Add(long value) => Interlocked.Add(ref _totals[0], value);

    /// <summary>Adds to the slot of tag set <paramref name="slot"/>; an out-of-range slot counts in the last one.</summary>
    public void Add(int slot, long value) =>
        Interlocked.Add(ref _totals[(uint)slot < (uint)_totals.Length ? slot : _totals.Length - 1], value);

    public long Total(int slot = 0) => Volatile.Read(ref _totals[slot]);

    private IEnumerable<Measurement<long>> Observe()
    {
        for (var i = 0; i < _totals.Length; i++)
        {
            var total = Volatile.Read(ref _totals[i]);
            if (total != 0)
            {
                yield return new Measurement<long>(total, _tags[i]);
            }
        }
    }
}

/// <summary>
/// A door's traffic: <c>messages.in</c>, <c>bytes.in</c>, <c>messages.out</c> and <c>bytes.out</c> on the door's
/// meter, each an <see cref="ObservedCounter"/> (one interlocked add per message and per byte count).
/// <c>messages.in</c> may be split by tag sets (<see cref="Received(long, int)"/>'s slot).
/// </summary>
public sealed class TrafficCounters(
    Meter meter, string messagesIn, string bytesIn, string messagesOut, string bytesOut,
    KeyValuePair<string, object?>[][]? messagesInTags = null)
{
    private readonly ObservedCounter _messagesIn = new(meter, "messages.in", messagesInTags ?? [[]], description: messagesIn);
    private readonly ObservedCounter _bytesIn = new(meter, "bytes.in", unit: "By", description: bytesIn);
    private readonly ObservedCounter _messagesOut = new(meter, "messages.out", description: messagesOut);
    private readonly ObservedCounter _bytesOut = new(meter, "bytes.out", unit: "By", description: bytesOut);

    /// <summary>One message of <paramref name="bytes"/> in, counted in <c>messages.in</c> slot <paramref name="slot"/>.</summary>
    public void Received(long bytes, int slot = 0)
    {
        _messagesIn.Add(slot, 1);
        _bytesIn.Add(bytes);
    }

    public void Sent(long bytes)
    {
        _messagesOut.Add(1);
        _bytesOut.Add(bytes);
    }
}
