using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging;
using Perf.Core.Internal;

namespace Perf.Core.Tests;

public class ConnectionGuardTests
{
    private static readonly long Second = Stopwatch.Frequency;

    private static AddressKey Key(string address) => AddressKey.From(IPAddress.Parse(address));

    [Fact]
    public void AddressKey_MapsIPv4AndItsIPv6MappedFormToTheSameKey()
    {
        Assert.Equal(Key("10.1.2.3"), Key("::ffff:10.1.2.3"));
        Assert.NotEqual(Key("10.1.2.3"), Key("10.1.2.4"));
    }

    [Fact]
    public void TryTakeConnection_AllowsTheBurst_ThenRefusesUntilTheBucketRefills()
    {
        var table = new AddressTable(1024, RateLimit.Parse("5:1"), 10, 60 * Second);
        var a = Key("10.0.0.1");
        for (int i = 0; i < 5; i++)
        {
            Assert.True(table.TryTakeConnection(a, 1000));
        }

        Assert.False(table.TryTakeConnection(a, 1000));
        Assert.True(table.TryTakeConnection(Key("10.0.0.2"), 1000)); // another address has its own bucket
        Assert.True(table.TryTakeConnection(a, 1000 + (Second / 5) + 1)); // one token regained after 200 ms
        Assert.False(table.TryTakeConnection(a, 1000 + (Second / 5) + 2));
    }

    [Fact]
    public void RecordFailure_BlocksAtTheThreshold_OncePerBlock_AndTheBlockEnds()
    {
        var table = new AddressTable(1024, null, 3, 60 * Second);
        var a = Key("10.0.0.1");
        long now = 1000;
        Assert.False(table.RecordFailure(a, now));
        Assert.False(table.RecordFailure(a, now));
        Assert.False(table.IsBlocked(a, now));
        Assert.True(table.RecordFailure(a, now)); // the third blocks
        Assert.True(table.IsBlocked(a, now));
        Assert.False(table.RecordFailure(a, now)); // already blocked: not reported again
        Assert.False(table.IsBlocked(Key("10.0.0.2"), now));
        Assert.True(table.IsBlocked(a, now + (59 * Second)));
        Assert.False(table.IsBlocked(a, now + (61 * Second)));
    }

    [Fact]
    public void RecordFailure_FailuresFartherApartThanTheBlockDuration_DoNotAddUp()
    {
        var table = new AddressTable(1024, null, 3, 10 * Second);
        var a = Key("10.0.0.1");
        for (int i = 0; i < 10; i++)
        {
            Assert.False(table.RecordFailure(a, 1000 + (i * 11 * Second)));
        }
    }

    [Fact]
    public void Table_StaysWithinItsCapacity_UnderAFloodOfDistinctAddresses_AndKeepsRecentBlocks()
    {
        const int capacity = 1024;
        var table = new AddressTable(capacity, RateLimit.Parse("100:1"), 2, 60 * Second);
        var attacker = Key("192.0.2.1");
        long now = 1000;
        table.RecordFailure(attacker, now);
        Assert.True(table.RecordFailure(attacker, now));
        Span<byte> bytes = stackalloc byte[4];
        for (int i = 0; i < 200_000; i++)
        {
            // Each spoofed address connects once, within the same second: none is idle, so eviction is by age.
            bytes[0] = 10;
            bytes[1] = (byte)(i >> 16);
            bytes[2] = (byte)(i >> 8);
            bytes[3] = (byte)i;
            table.TryTakeConnection(AddressKey.From(new IPAddress(bytes)), now + i);
            Assert.True(table.Count <= capacity);
            if (i % 64 == 0)
            {
                table.RecordFailure(attacker, now + i); // the blocked address stays recently seen
            }
        }

        Assert.True(table.IsBlocked(attacker, now + 200_000));
    }

    [Fact]
    public void Guard_ExemptsLoopbackByDefault_AndBlocksItWhenTold()
    {
        using var exempt = new ConnectionGuard(new ConnectionGuardOptions { AuthFailuresBeforeBlock = 2 }, new ListLogger());
        for (int i = 0; i < 5; i++)
        {
            exempt.AuthFailed("mqtt", IPAddress.Loopback, "unknown access token");
        }

        Assert.False(exempt.IsBlocked("mqtt", IPAddress.Loopback));
        Assert.False(exempt.IsBlocked("mqtt", IPAddress.Parse("::ffff:127.0.0.1")));

        var log = new ListLogger();
        using var strict = new ConnectionGuard(new ConnectionGuardOptions { AuthFailuresBeforeBlock = 2, ExemptLoopback = false }, log);
        Assert.False(strict.AnyBlocked);
        strict.AuthFailed("mqtt", IPAddress.Loopback, "unknown access token");
        strict.AuthFailed("http", IPAddress.Loopback, "unknown access token");
        Assert.True(strict.AnyBlocked);
        Assert.True(strict.IsBlocked("coap", IPAddress.Loopback)); // one address, every door
        Assert.Single(log.Lines, l => l.Level == LogLevel.Warning && l.Text.Contains("127.0.0.1 blocked for 60 s after 2 wrong credentials (last on http"));
    }

    [Fact]
    public void Guard_TryAdmit_RefusesAnAddressOverItsConnectionRate()
    {
        var log = new ListLogger();
        using var guard = new ConnectionGuard(new ConnectionGuardOptions { ConnectionRatePerAddress = RateLimit.Parse("3:60") }, log);
        var remote = IPAddress.Parse("198.51.100.7");
        Assert.True(guard.TryAdmit("mqtt", remote));
        Assert.True(guard.TryAdmit("tcp", remote));
        Assert.True(guard.TryAdmit("mqtt", remote));
        Assert.False(guard.TryAdmit("mqtt", remote));
        Assert.True(guard.TryAdmit("mqtt", IPAddress.Parse("198.51.100.8")));
        Assert.True(guard.TryAdmit("mqtt", IPAddress.Loopback));
    }

    [Fact]
    public void Quota_RefusesBeyondItsMaximum_AndAnExitFreesASlot()
    {
        using var guard = new ConnectionGuard(new ConnectionGuardOptions(), new ListLogger());
        var quota = guard.CreateQuota("mqtt", 2);
        Assert.True(quota.TryEnter(null));
        Assert.True(quota.TryEnter(null));
        Assert.False(quota.TryEnter(null));
        Assert.Equal(2, quota.Open);
        quota.Exit();
        Assert.True(quota.TryEnter(null));
        Assert.True(guard.CreateQuota("http", 0).TryEnter(null)); // 0 = unlimited
    }

    [Fact]
    public async Task Report_AFlood_IsOneWarning_ThenOneSummaryPerInterval_AndEndsWhenQuiet()
    {
        var log = new ListLogger();
        using var guard = new ConnectionGuard(new ConnectionGuardOptions { SummaryInterval = TimeSpan.FromMilliseconds(300) }, log);
        for (int i = 0; i < 1000; i++)
        {
            guard.Report("mqtt", "connections closed: protocol violation", "conn " + i);
        }

        Assert.Single(log.Lines);
        Assert.Contains("mqtt: connections closed: protocol violation (conn 0)", log.Lines.Single().Text);

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (log.Lines.Count < 2 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.Contains(log.Lines, l => l.Level == LogLevel.Warning && l.Text.Contains("mqtt: 999 more connections closed: protocol violation"));

        // Quiet now: the burst ends after one empty interval (without another line), and the next event starts a new one.
        deadline = DateTime.UtcNow.AddSeconds(30);
        while (guard.IsBurstOpen("mqtt", "connections closed: protocol violation") && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.False(guard.IsBurstOpen("mqtt", "connections closed: protocol violation"));
        int settled = log.Lines.Count;
        Assert.Equal(2, settled);
        guard.Report("mqtt", "connections closed: protocol violation", "conn late");
        Assert.Equal(3, log.Lines.Count);
        Assert.Contains("(conn late)", log.Lines.Last().Text);
    }

    private sealed class ListLogger : ILogger<ConnectionGuard>
    {
        private readonly ConcurrentQueue<(LogLevel Level, string Text)> _lines = new();

        public IReadOnlyCollection<(LogLevel Level, string Text)> Lines => _lines.Where(l => l.Level >= LogLevel.Information).ToArray();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            _lines.Enqueue((logLevel, formatter(state, exception)));
    }
}
