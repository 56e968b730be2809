namespace Perf.Core.Tests;

public class SessionTableTests
{
    [Fact]
    public void Register_MakesSessionVisible_AndUnregisterRemovesIt()
    {
        var table = new SessionTable();
        var id = Guid.NewGuid();
        var s = new FakeSession(id);
        table.Register(s);
        Assert.Same(s, Assert.Single(table.GetSessions(id)));
        Assert.Equal(1, table.Count);
        table.Unregister(s);
        Assert.Empty(table.GetSessions(id));
        Assert.Equal(0, table.Count);
    }

    [Fact]
    public async Task Register_ClosesOlderSessionOfSameDeviceAndTransport()
    {
        var table = new SessionTable();
        var id = Guid.NewGuid();
        var old = new FakeSession(id);
        var coap = new FakeSession(id, "COAP");
        var newer = new FakeSession(id);
        table.Register(old);
        table.Register(coap);
        table.Register(newer);
        Assert.Equal("replaced by a newer session", await old.Closed);
        Assert.False(coap.Closed.IsCompleted);
        Assert.Equal(2, table.Count);
        Assert.Contains(newer, table.GetSessions(id));
        Assert.DoesNotContain(old, table.GetSessions(id));

        table.Unregister(old); // late unregister of the replaced one must not remove the newer
        Assert.Contains(newer, table.GetSessions(id));
        Assert.Equal(2, table.Count);
    }

    [Fact]
    public async Task ParallelRegisterUnregister_FromManyThreads_LeavesConsistentTable()
    {
        var table = new SessionTable();
        var devices = Enumerable.Range(0, 50).Select(_ => Guid.NewGuid()).ToArray();
        string[] transports = ["MQTT", "COAP", "HTTP"];
        var tasks = Enumerable.Range(0, 8).Select(t => Task.Run(() =>
        {
            var random = new Random(t);
            for (var i = 0; i < 5000; i++)
            {
                var s = new FakeSession(devices[random.Next(devices.Length)], transports[random.Next(transports.Length)]);
                table.Register(s);
                if (random.Next(2) == 0)
                {
                    table.Unregister(s);
                }
            }
        })).ToArray();
        await Task.WhenAll(tasks);

        var total = 0;
        foreach (var device in devices)
        {
            var sessions = table.GetSessions(device);
            Assert.Equal(sessions.Count, sessions.Select(s => s.Transport).Distinct().Count());
            total += sessions.Count;
        }
        Assert.Equal(total, table.Count);
    }

    [Fact]
    public async Task ConcurrentRegistrationsOfSameDevice_LeaveOneSession_AndCloseAllOthers()
    {
        var table = new SessionTable();
        var id = Guid.NewGuid();
        var sessions = Enumerable.Range(0, 64).Select(_ => new FakeSession(id)).ToArray();
        await Parallel.ForEachAsync(sessions, (s, _) =>
        {
            table.Register(s);
            return ValueTask.CompletedTask;
        });
        var winner = Assert.Single(table.GetSessions(id));
        Assert.Equal(1, table.Count);
        foreach (var s in sessions.Where(s => !ReferenceEquals(s, winner)))
        {
            Assert.True(s.Closed.IsCompleted);
        }
        Assert.False(((FakeSession)winner).Closed.IsCompleted);
    }
}
