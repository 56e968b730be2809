using System.Diagnostics;
using System.Net;

namespace Perf.Core.Internal;

/// <summary>An IPv4 or IPv6 address as two integers (IPv4 as IPv4-mapped IPv6), so the table keys do not hold <see cref="IPAddress"/> objects.</summary>
internal readonly record struct AddressKey(ulong High, ulong Low)
{
    public static AddressKey From(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
        {
            bytes[..10].Clear();
            bytes[10] = 0xFF;
            bytes[11] = 0xFF;
            address.TryWriteBytes(bytes[12..], out _);
        }
        else
        {
            address.TryWriteBytes(bytes, out _);
        }

        return new AddressKey(
            System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes),
            System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]));
    }
}

/// <summary>
/// Per-source-address state of <see cref="ConnectionGuard"/>: a connection token bucket and a
/// wrong-credential counter with its block. Capped at a fixed number of entries: when full, entries that
/// hold nothing worth remembering (bucket refilled, no recent failure, not blocked) are dropped, and if
/// that frees less than an eighth, the least recently seen eighth goes. So the table cannot grow past its
/// cap whatever the number of source addresses, and eviction is amortised over many inserts.
/// One lock: it is taken per accepted connection and per wrong credential, never per message.
/// </summary>
internal sealed class AddressTable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<AddressKey, Entry> _entries = [];
    private readonly int _capacity;
    private readonly (double Capacity, double TicksPerToken)[] _windows;
    private readonly long _refillTicks;
    private readonly int _failuresBeforeBlock;
    private readonly long _blockTicks;
    private long _blockedUntilMax;

    public AddressTable(int capacity, RateLimit? rate, int failuresBeforeBlock, long blockTicks)
    {
        _capacity = Math.Max(16, capacity);
        _windows = rate is null ? [] : rate.Windows.Select(w => ((double)w.Capacity, (double)w.Seconds * Stopwatch.Frequency / w.Capacity)).ToArray();
        _refillTicks = rate is null ? 0 : rate.Windows.Max(w => w.Seconds) * Stopwatch.Frequency;
        _failuresBeforeBlock = failuresBeforeBlock;
        _blockTicks = blockTicks;
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>False when no address can be blocked now: the common case costs one volatile read.</summary>
    public bool AnyBlocked => Stopwatch.GetTimestamp() < Volatile.Read(ref _blockedUntilMax);

    public bool TryTakeConnection(AddressKey key, long now)
    {
        lock (_lock)
        {
            var entry = GetOrAdd(key, now);
            entry.LastSeen = now;
            var tokens = entry.Tokens;
            long elapsed = now - entry.LastRefill;
            entry.LastRefill = now;
            bool ok = true;
            for (int i = 0; i < tokens.Length; i++)
            {
                if (elapsed > 0)
                {
                    tokens[i] = Math.Min(_windows[i].Capacity, tokens[i] + (elapsed / _windows[i].TicksPerToken));
                }

                ok &= tokens[i] >= 1;
            }

            if (!ok)
            {
                return false;
            }

            for (int i = 0; i < tokens.Length; i++)
            {
                tokens[i] -= 1;
            }

            return true;
        }
    }

    /// <summary>Counts a wrong credential; true when this one blocks the address (once per block).</summary>
    public bool RecordFailure(AddressKey key, long now)
    {
        lock (_lock)
        {
            var entry = GetOrAdd(key, now);
            entry.LastSeen = now;
            if (entry.BlockedUntil > now)
            {
                return false;
            }

            // Failures further apart than the block duration do not add up.
            if (now - entry.LastFailure > _blockTicks)
            {
                entry.Failures = 0;
            }

            entry.LastFailure = now;
            if (++entry.Failures < _failuresBeforeBlock)
            {
                return false;
            }

            entry.Failures = 0;
            entry.BlockedUntil = now + _blockTicks;
            if (entry.BlockedUntil > _blockedUntilMax)
            {
                Volatile.Write(ref _blockedUntilMax, entry.BlockedUntil);
            }

            return true;
        }
    }

    public bool IsBlocked(AddressKey key, long now)
    {
        lock (_lock)
        {
            return _entries.TryGetValue(key, out var entry) && entry.BlockedUntil > now;
        }
    }

    private Entry GetOrAdd(AddressKey key, long now)
    {
        if (_entries.TryGetValue(key, out var entry))
        {
            return entry;
        }

        if (_entries.Count >= _capacity)
        {
            Evict(now);
        }

        entry = new Entry(_windows.Length, now);
        for (int i = 0; i < _windows.Length; i++)
        {
            entry.Tokens[i] = _windows[i].Capacity;
        }

        _entries.Add(key, entry);
        return entry;
    }

    private void Evict(long now)
    {
        foreach (var (key, entry) in _entries)
        {
            bool idle = entry.BlockedUntil <= now
                && (entry.Failures == 0 || now - entry.LastFailure > _blockTicks)
                && now - entry.LastSeen >= _refillTicks;
            if (idle)
            {
                _entries.Remove(key);
            }
        }

        int target = _capacity - (_capacity / 8);
        if (_entries.Count <= target)
        {
            return;
        }

        var oldest = _entries.OrderBy(e => e.Value.LastSeen).Take(_entries.Count - target).Select(e => e.Key).ToArray();
        foreach (var key in oldest)
        {
            _entries.Remove(key);
        }
    }

    private sealed class Entry(int windows, long now)
    {
        public readonly double[] Tokens = windows == 0 ? [] : new double[windows];
        public long LastRefill = now;
        public long LastSeen = now;
        public long LastFailure = long.MinValue / 2;
        public long BlockedUntil = long.MinValue / 2;
        public int Failures;
    }
}
