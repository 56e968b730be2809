using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using Perf.Core.Internal;

namespace Perf.Core;

/// <summary>Settings of <see cref="ConnectionGuard"/>: per-source-address limits shared by every door.</summary>
public sealed class ConnectionGuardOptions
{
    /// <summary>New connections per source address, reference rate-limit format (<c>"100:1"</c>: a burst of 100, then 100/s); null = unlimited.</summary>
    public RateLimit? ConnectionRatePerAddress { get; set; } = RateLimit.Parse("100:1");

    /// <summary>Wrong credentials from one address (within <see cref="AuthBlockDuration"/> of each other) before it is blocked; 0 disables blocking. Default 10.</summary>
    public int AuthFailuresBeforeBlock { get; set; } = 10;

    /// <summary>How long a blocked address is refused without its credentials being checked. Default 60 s.</summary>
    public TimeSpan AuthBlockDuration { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Loopback addresses (a local proxy, tests, the load tool) are neither rate limited nor blocked. Default true.</summary>
    public bool ExemptLoopback { get; set; } = true;

    /// <summary>Source addresses tracked at once; beyond it idle entries, then the least recently seen, are forgotten. Default 65536 (about 100 bytes each).</summary>
    public int MaxTrackedAddresses { get; set; } = 65_536;

    /// <summary>Window of the aggregated warnings ("N connections refused in the last 10 s").</summary>
    public TimeSpan SummaryInterval { get; set; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// The shared policy against hostile and runaway clients, used by every door: connection rate per
/// source address (token bucket), wrong-credential blocking per source address, per-door connection
/// quotas, and aggregated logging of refusals and hostile events (one Warning when a burst starts, one
/// summary per <see cref="ConnectionGuardOptions.SummaryInterval"/> while it lasts; one Debug line per
/// event). Memory is bounded: the address table holds at most
/// <see cref="ConnectionGuardOptions.MaxTrackedAddresses"/> entries, so a flood from spoofed addresses
/// cannot grow it. Thread-safe. Never sees a credential: callers report failures, not tokens.
/// </summary>
public sealed class ConnectionGuard : IDisposable
{
    private readonly ConnectionGuardOptions _options;
    private readonly ILogger _logger;
    private readonly AddressTable _table;
    private readonly BurstLog _bursts;

    public ConnectionGuard(ConnectionGuardOptions options, ILogger<ConnectionGuard> logger)
    {
        _options = options;
        _logger = logger;
        _table = new AddressTable(options.MaxTrackedAddresses, options.ConnectionRatePerAddress, options.AuthFailuresBeforeBlock,
            (long)(options.AuthBlockDuration.TotalSeconds * Stopwatch.Frequency));
        _bursts = new BurstLog(logger, options.SummaryInterval);
    }

    public ConnectionGuardOptions Options => _options;

    /// <summary>True while some address may be blocked; one volatile read, for doors that would allocate to ask <see cref="IsBlocked"/>.</summary>
    public bool AnyBlocked => _table.AnyBlocked;

    /// <summary>Addresses tracked now (bounded by <see cref="ConnectionGuardOptions.MaxTrackedAddresses"/>).</summary>
    public int TrackedAddresses => _table.Count;

    /// <summary>A connection quota for <paramref name="door"/>; <paramref name="maxConnections"/> 0 or less = unlimited.</summary>
    public ConnectionQuota CreateQuota(string door, int maxConnections) => new(this, door, maxConnections);

    /// <summary>
    /// Charges one new connection from <paramref name="remote"/> to its address's bucket. False (the
    /// caller closes the connection at once) when the address connects faster than the configured rate.
    /// </summary>
    public bool TryAdmit(string door, IPAddress? remote)
    {
        if (_options.ConnectionRatePerAddress is null || Exempt(remote, out var key))
        {
            return true;
        }

        if (_table.TryTakeConnection(key, Stopwatch.GetTimestamp()))
        {
            return true;
        }

        GuardMetrics.ConnectionRefused(door, "rate");
        GuardLog.RefusedRate(_logger, door, remote!, _options.ConnectionRatePerAddress.Text);
        _bursts.Report(door, "connections refused: over the connection rate per address " + _options.ConnectionRatePerAddress.Text, remote!.ToString());
        return false;
    }

    /// <summary>
    /// True while <paramref name="remote"/> is blocked for wrong credentials: the door refuses the
    /// attempt without checking its credentials. Allocation-free and lock-free while nothing is blocked.
    /// </summary>
    public bool IsBlocked(string door, IPAddress? remote)
    {
        if (!_table.AnyBlocked || Exempt(remote, out var key) || !_table.IsBlocked(key, Stopwatch.GetTimestamp()))
        {
            return false;
        }

        GuardMetrics.AuthRefusedWhileBlocked(door);
        GuardLog.RefusedBlocked(_logger, door, remote!);
        return true;
    }

    /// <summary>
    /// Records wrong credentials from <paramref name="remote"/> (<paramref name="reason"/> says what was
    /// wrong, never the credential). The failure that reaches the threshold blocks the address and is
    /// logged as a Warning once per block.
    /// </summary>
    public void AuthFailed(string door, IPAddress? remote, string reason)
    {
        GuardMetrics.AuthFailed(door);
        if (_options.AuthFailuresBeforeBlock <= 0 || Exempt(remote, out var key))
        {
            return;
        }

        if (_table.RecordFailure(key, Stopwatch.GetTimestamp()))
        {
            GuardMetrics.Blocked(door);
            GuardLog.Blocked(_logger, remote!, door, _options.AuthFailuresBeforeBlock, reason, _options.AuthBlockDuration.TotalSeconds);
        }
    }

    /// <summary>
    /// A hostile or broken client was dropped (<paramref name="kind"/> a fixed description such as
    /// "protocol violation", <paramref name="detail"/> the specific reason and peer). The first of a burst
    /// is a Warning, the rest are counted into one summary per interval.
    /// </summary>
    /// <summary>True while a burst of <paramref name="kind"/> at <paramref name="door"/> is being summarised (tests wait on its end).</summary>
    internal bool IsBurstOpen(string door, string kind) => _bursts.IsOpen(door, kind);

    public void Report(string door, string kind, string detail)
    {
        GuardMetrics.Hostile(door, kind);
        _bursts.Report(door, kind, detail);
    }

    internal void QuotaExceeded(string door, int max, IPAddress? remote)
    {
        GuardMetrics.ConnectionRefused(door, "limit");
        GuardLog.RefusedLimit(_logger, door, remote?.ToString() ?? "?", max);
        _bursts.Report(door, "connections refused: at the connection limit of " + max.ToString(System.Globalization.CultureInfo.InvariantCulture), remote?.ToString() ?? "?");
    }

    private bool Exempt(IPAddress? remote, out AddressKey key)
    {
        key = default;
        if (remote is null)
        {
            return true;
        }

        if (remote.IsIPv4MappedToIPv6)
        {
            remote = remote.MapToIPv4();
        }

        if (_options.ExemptLoopback && IPAddress.IsLoopback(remote))
        {
            return true;
        }

        key = AddressKey.From(remote);
        return false;
    }

    public void Dispose() => _bursts.Dispose();
}

/// <summary>
/// The open-connection count of one door against its maximum. <see cref="TryEnter"/> at accept,
/// <see cref="Exit"/> when the connection ends (only after a successful enter).
/// </summary>
public sealed class ConnectionQuota
{
    private readonly ConnectionGuard _guard;
    private int _open;

    internal ConnectionQuota(ConnectionGuard guard, string door, int max)
    {
        _guard = guard;
        Door = door;
        Max = max;
    }

    public string Door { get; }

    /// <summary>Maximum open connections; 0 or less = unlimited.</summary>
    public int Max { get; }

    public int Open => Volatile.Read(ref _open);

    /// <summary>Counts a new connection; false (nothing counted, the refusal logged and counted) when the door is full.</summary>
    public bool TryEnter(IPAddress? remote)
    {
        if (Interlocked.Increment(ref _open) <= Max || Max <= 0)
        {
            return true;
        }

        Interlocked.Decrement(ref _open);
        _guard.QuotaExceeded(Door, Max, remote);
        return false;
    }

    public void Exit() => Interlocked.Decrement(ref _open);
}
