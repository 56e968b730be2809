using Perf.Core.Internal;

namespace Perf.Core.Tests.Internal;

public class BackgroundThreadTests
{
    [Fact]
    public async Task Run_DoesTheWorkOnItsOwnLowPriorityThread_AndCompletesWithIt()
    {
        var callerNice = BackgroundThread.CurrentNice();
        int workNice = 0, workThread = 0;
        bool onPool = true;
        await BackgroundThread.Run(async () =>
        {
            workNice = BackgroundThread.CurrentNice();
            workThread = Environment.CurrentManagedThreadId;
            onPool = Thread.CurrentThread.IsThreadPoolThread;
            await Task.Yield();
        });
        Assert.False(onPool);
        Assert.NotEqual(Environment.CurrentManagedThreadId, workThread);
        Assert.Equal(BackgroundThread.Nice, workNice);
        Assert.Equal(callerNice, BackgroundThread.CurrentNice());

        var failure = BackgroundThread.Run(() => Task.FromException(new InvalidOperationException("maintenance failed")));
        Assert.Equal("maintenance failed", (await Assert.ThrowsAsync<InvalidOperationException>(() => failure)).Message);
    }
}
