using Perf.Api.Hosting;

namespace Perf.Api.Tests;

public sealed class FailureLogThrottleTests
{
    [Fact]
    public void AtMostTenLinesASecond_AndEachLoggedLineCarriesTheCountOfTheRefusedOnesBeforeIt()
    {
        long now = 5_000;
        var throttle = new FailureLogThrottle(() => now);
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

        // One window (the clock did not move): exactly the limit got through.
        Assert.Equal(FailureLogThrottle.LinesPerSecond, logged);
        Assert.Equal(15, refusedSinceLogged);

        // Still inside the window 999 ms later; the next window's first line reports every refusal since the last logged one.
        now += 999;
        Assert.False(Attempt());
        Assert.Equal(16, refusedSinceLogged);
        now += 1;
        Assert.True(Attempt());
        Assert.Equal(0, refusedSinceLogged);
    }
}
