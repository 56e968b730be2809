using System.Diagnostics;
using Perf.Core;

namespace Perf.Core.Tests;

public class RateLimiterTests
{
    private static long Seconds(double s) => (long)(s * Stopwatch.Frequency);

    [Theory]
    [InlineData("20:1,600:60", 2)]
    [InlineData(" 5:10 ", 1)]
    public void Parse_ReadsEveryWindow(string text, int windows)
    {
        var limit = RateLimit.Parse(text)!;
        Assert.Equal(windows, limit.Windows.Count);
        Assert.Equal(text.Trim(), limit.Text);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("  ")]
    public void Parse_BlankMeansNoLimit(string? text) => Assert.Null(RateLimit.Parse(text));

    [Theory]
    [InlineData("20")]
    [InlineData("20:")]
    [InlineData("0:1")]
    [InlineData("20:0")]
    [InlineData("-1:1")]
    [InlineData("20:1,x:60")]
    [InlineData("20:1:3")]
    public void Parse_RejectsMalformedWindows(string text) => Assert.Throws<FormatException>(() => RateLimit.Parse(text));

    [Fact]
    public void TryAcquire_AllowsTheCapacity_ThenRefusesUntilTokensRefill()
    {
        var limiter = new RateLimiter(RateLimit.Parse("20:1,600:60")!, startTimestamp: 0);
        for (int i = 0; i < 20; i++)
        {
            Assert.True(limiter.TryAcquire(0, 1));
        }

        Assert.False(limiter.TryAcquire(0, 1));
        Assert.False(limiter.TryAcquire(Seconds(0.04), 1)); // 0.8 of a token back
        Assert.True(limiter.TryAcquire(Seconds(0.05), 1));  // one token every 50 ms
        Assert.False(limiter.TryAcquire(Seconds(0.05), 1));
    }

    [Fact]
    public void TryAcquire_HonoursTheLongerWindow()
    {
        var limiter = new RateLimiter(RateLimit.Parse("20:1,30:60")!, startTimestamp: 0);
        int allowed = 0;
        for (int second = 0; second < 10; second++)
        {
            for (int i = 0; i < 20; i++)
            {
                allowed += limiter.TryAcquire(Seconds(second), 1) ? 1 : 0;
            }
        }

        // 30 at once plus 0.5 per second regained over 9 s.
        Assert.InRange(allowed, 30, 35);
    }

    [Fact]
    public void TryAcquire_TakesNothing_WhenAnyWindowRefuses()
    {
        var limiter = new RateLimiter(RateLimit.Parse("10:1,2:60")!, startTimestamp: 0);
        Assert.True(limiter.TryAcquire(0, 2));
        Assert.False(limiter.TryAcquire(0, 1));
        // The 10:1 window was not charged by the refusal: after 60 s both are full again.
        Assert.True(limiter.TryAcquire(Seconds(60), 2));
    }

    [Fact]
    public void TryAcquire_DoesNotAllocate()
    {
        var limiter = RateLimit.Parse("1000000:1")!.CreateLimiter();
        limiter.TryAcquire();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            limiter.TryAcquire();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public async Task TryAcquire_NeverGrantsMoreThanTheCapacity_UnderContention()
    {
        var limiter = RateLimit.Parse("1000:3600")!.CreateLimiter();
        int granted = 0;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            for (int i = 0; i < 1000; i++)
            {
                if (limiter.TryAcquire())
                {
                    Interlocked.Increment(ref granted);
                }
            }
        })));
        Assert.Equal(1000, granted);
    }
}
