using Perf.Api.Hosting;

namespace Perf.Api.Tests;

public sealed class FailureLogThrottleTests
{
    [Fact]
    public async Task AtMostTenLinesASecond_AndEachLoggedLineCarriesTheCountOfTheRefusedOnesBeforeIt()
    {
        var throttle = new FailureLogThrottle();
        var logged = 0;
        var refusedSinceLogged = 0;
        bool Attempt()
        {
            if (throttle.TryEnter(out var suppressed))
            {
                Assert.Equal(refusedSinceLogged, suppressed);
                refusedSinceLogged = 0;
                logged++;
                return true;
            }

            refusedSinceLogged++;
            return false;
        }

        for (var i = 0; i < 25; i++)
        {
            Attempt();
        }

        // 25 calls take microseconds: one window, so exactly the limit got through.
        Assert.Equal(FailureLogThrottle.LinesPerSecond, logged);
        Assert.Equal(15, refusedSinceLogged);

        // Poll until the next window opens; its first line reports all refusals since the last logged line.
        var deadline = Environment.TickCount64 + 10_000;
        while (!Attempt())
        {
            Assert.True(Environment.TickCount64 < deadline, "the window never reopened");
            await Task.Delay(20);
        }

        Assert.Equal(0, refusedSinceLogged);
    }
}
