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

    [Fact]
    public async Task Run_PutsThreadsStartedFromTheLoweredThread_BackAtTheCallersPriority()
    {
        // A thread started from the lowered thread inherits its nice value (Linux), as a thread-pool worker the
        // runtime creates there would; once the work's low-priority part is over it must be back at the caller's.
        var callerNice = BackgroundThread.CurrentNice();
        using var started = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        int childTid = 0, childNiceAtStart = 0;
        var child = new Thread(() =>
        {
            childTid = BackgroundThread.CurrentThreadId();
            childNiceAtStart = BackgroundThread.CurrentNice();
            started.Set();
            release.Wait();
        }) { IsBackground = true };
        try
        {
            await BackgroundThread.Run(() =>
            {
                child.Start();
                started.Wait();
                return Task.CompletedTask;
            });
            Assert.Equal(BackgroundThread.Nice, childNiceAtStart);
            Assert.Equal(callerNice, BackgroundThread.NiceOf(childTid));
        }
        finally
        {
            release.Set();
        }

        child.Join();
    }
}
