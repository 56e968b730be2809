using System.Collections.Concurrent;
using System.Threading.Channels;
using Perf.Core.Domain;
using Perf.Core.Telemetry;
using S = Perf.Core.PersistentRpcStatus;

namespace Perf.Core.Tests;

/// <summary>A session that records pushed RPCs on a channel and may report transport delivery (MQTT QoS 1).</summary>
internal sealed class RpcDeviceSession(Guid deviceId, bool reportsDelivery = false, bool accept = true) : IDeviceSession
{
    private readonly Channel<RpcRequest> _pushed = Channel.CreateUnbounded<RpcRequest>();

    public Guid DeviceId { get; } = deviceId;
    public string Transport => "MQTT";
    public string ConnectionId { get; } = Guid.NewGuid().ToString("N")[..8];
    public bool WantsAttributeUpdates => false;
    public bool WantsRpc => true;
    public bool ReportsRpcDelivery { get; } = reportsDelivery;
    public bool Accept { get; set; } = accept;
    public int Refused;

    public bool PushRpcRequest(RpcRequest request)
    {
        if (!Accept)
        {
            Interlocked.Increment(ref Refused);
            return false;
        }
        _pushed.Writer.TryWrite(request);
        return true;
    }

    public async Task<RpcRequest> NextAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        return await _pushed.Reader.ReadAsync(timeout.Token);
    }

    public bool TryNext(out RpcRequest? request) => _pushed.Reader.TryRead(out request);

    public void PushAttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted)
    {
    }

    public void Close(string reason)
    {
    }
}

/// <summary>Awaits persistent RPC state changes through <see cref="RpcService.PersistentRpcChanged"/> (no polling).</summary>
internal sealed class RpcProbe : IDisposable
{
    private readonly RpcService _rpc;
    private readonly Lock _lock = new();
    private readonly List<PersistentRpc> _history = [];
    private readonly List<(Func<PersistentRpc, bool> Match, TaskCompletionSource<PersistentRpc> Done)> _waiters = [];

    public RpcProbe(RpcService rpc)
    {
        _rpc = rpc;
        _rpc.PersistentRpcChanged += OnChanged;
    }

    private void OnChanged(PersistentRpc rpc)
    {
        lock (_lock)
        {
            _history.Add(rpc);
            _waiters.RemoveAll(w => w.Match(rpc) && w.Done.TrySetResult(rpc));
        }
    }

    /// <summary>The first change (past or future) of <paramref name="id"/> to <paramref name="status"/>, with that many attempts when given.</summary>
    public Task<PersistentRpc> WaitAsync(Guid id, S status, int attempts = -1)
    {
        bool Match(PersistentRpc r) => r.Id == id && r.Status == status && (attempts < 0 || r.Attempts == attempts);
        lock (_lock)
        {
            if (_history.Find(Match) is { } seen)
            {
                return Task.FromResult(seen);
            }
            var done = new TaskCompletionSource<PersistentRpc>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((Match, done));
            return done.Task.WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    public bool Reached(Guid id, S status)
    {
        lock (_lock)
        {
            return _history.Exists(r => r.Id == id && r.Status == status);
        }
    }

    public void Dispose() => _rpc.PersistentRpcChanged -= OnChanged;
}

public class PersistentRpcTests
{
    private static long In(int ms) => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + ms;

    private static async Task<PersistentRpc> SubmitAsync(PerfEngine engine, Device device, bool oneWay = false, int expiresInMs = 60_000, int? retries = null,
        string method = "setGpio")
    {
        var rpc = await engine.Rpc.SubmitPersistentAsync(device, method, "{\"pin\":1}", oneWay, In(expiresInMs), retries, "{\"note\":\"x\"}");
        Assert.NotNull(rpc);
        return rpc;
    }

    [Fact]
    public void StateMachine_AllowsExactlyTheReferenceTransitions()
    {
        S[] all = [.. Enum.GetValues<S>()];
        var twoWay = new HashSet<(S, S)>
        {
            (S.Queued, S.Sent), (S.Queued, S.Expired), (S.Queued, S.Failed), (S.Queued, S.Deleted),
            (S.Sent, S.Sent), (S.Sent, S.Queued), (S.Sent, S.Delivered), (S.Sent, S.Successful), (S.Sent, S.Timeout), (S.Sent, S.Failed), (S.Sent, S.Deleted),
            (S.Delivered, S.Successful), (S.Delivered, S.Timeout), (S.Delivered, S.Deleted),
            (S.Successful, S.Deleted), (S.Timeout, S.Deleted), (S.Expired, S.Deleted), (S.Failed, S.Deleted),
        };
        foreach (var from in all)
        {
            foreach (var to in all)
            {
                Assert.True(twoWay.Contains((from, to)) == PersistentRpc.IsAllowed(from, to, oneWay: false), $"two-way {from} -> {to}");
                var oneWayAllowed = twoWay.Contains((from, to)) && to != S.Successful && !(from == S.Delivered && to != S.Deleted);
                Assert.True(oneWayAllowed == PersistentRpc.IsAllowed(from, to, oneWay: true), $"one-way {from} -> {to}");
            }
        }
        Assert.True(PersistentRpc.IsTerminalStatus(S.Delivered, oneWay: true));
        Assert.False(PersistentRpc.IsTerminalStatus(S.Delivered, oneWay: false));
    }

    [Fact]
    public async Task TwoWay_QueuedWhileOffline_SentOnConnect_DeliveredOnAck_SuccessfulOnReply()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        using var probe = new RpcProbe(engine.Rpc);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);

        var rpc = await SubmitAsync(engine, device);
        Assert.Equal(S.Queued, rpc.Status);
        Assert.Equal(S.Queued, engine.Rpc.GetPersistent(rpc.Id)!.Status);

        var session = new RpcDeviceSession(device.Id, reportsDelivery: true);
        engine.Sessions.Register(session);
        var request = await session.NextAsync();
        Assert.True(request.Persistent);
        Assert.Equal(rpc.Id, request.RpcId);
        Assert.Equal(rpc.RequestId, request.RequestId);
        Assert.Equal("{\"pin\":1}", request.ParamsJson);
        var sent = await probe.WaitAsync(rpc.Id, S.Sent);
        Assert.Equal(1, sent.Attempts);
        Assert.False(probe.Reached(rpc.Id, S.Delivered)); // waits for the transport's acknowledgement

        engine.DeviceApi.RpcDelivered(device, request.RequestId);
        await probe.WaitAsync(rpc.Id, S.Delivered);

        Assert.True((await engine.DeviceApi.RpcReplyAsync(device, request.RequestId, Engines.Json("{\"ok\":true}"))).IsOk);
        var done = engine.Rpc.GetPersistent(rpc.Id)!;
        Assert.Equal(S.Successful, done.Status);
        Assert.Equal("{\"ok\":true}", done.ResponseJson);
        Assert.Equal(UplinkStatus.NotFound, (await engine.DeviceApi.RpcReplyAsync(device, request.RequestId, Engines.Json("{}"))).Status);
    }

    [Fact]
    public async Task OneWay_EndsAtDelivered_AndIgnoresAReply()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        using var probe = new RpcProbe(engine.Rpc);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var session = new RpcDeviceSession(device.Id, reportsDelivery: true);
        engine.Sessions.Register(session);

        var rpc = await SubmitAsync(engine, device, oneWay: true);
        var request = await session.NextAsync();
        Assert.True(request.OneWay);
        await probe.WaitAsync(rpc.Id, S.Sent);
        engine.DeviceApi.RpcDelivered(device, request.RequestId);
        var delivered = await probe.WaitAsync(rpc.Id, S.Delivered);
        Assert.True(delivered.IsTerminal);
        Assert.False(await engine.Rpc.CompleteReplyAsync(device.Id, request.RequestId, "{}"));
        Assert.Equal(S.Delivered, engine.Rpc.GetPersistent(rpc.Id)!.Status);
    }

    [Fact]
    public async Task SessionWithoutDeliveryReports_CountsThePushAsDelivered()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        using var probe = new RpcProbe(engine.Rpc);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        engine.Sessions.Register(new RpcDeviceSession(device.Id, reportsDelivery: false));

        var oneWay = await SubmitAsync(engine, device, oneWay: true);
        var twoWay = await SubmitAsync(engine, device);
        await probe.WaitAsync(oneWay.Id, S.Delivered);
        await probe.WaitAsync(twoWay.Id, S.Delivered);
        Assert.Equal(S.Delivered, engine.Rpc.GetPersistent(twoWay.Id)!.Status);
    }

    /// <summary>
    /// A reply before the acknowledgement makes the RPC SUCCESSFUL; a failure reported instead of a reply (an edge's
    /// TIMEOUT or NO_ACTIVE_CONNECTION for its device) ends it as TIMEOUT or FAILED. The late ack changes nothing.
    /// </summary>
    [Theory]
    [InlineData(null, S.Successful)]
    [InlineData(RpcStatus.Timeout, S.Timeout)]
    [InlineData(RpcStatus.NoActiveConnection, S.Failed)]
    public async Task AnAnswerBeforeTheAcknowledgement_EndsTheRpc_AndTheLateAckChangesNothing(RpcStatus? failure, S expected)
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        using var probe = new RpcProbe(engine.Rpc);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var session = new RpcDeviceSession(device.Id, reportsDelivery: true);
        engine.Sessions.Register(session);

        var rpc = await SubmitAsync(engine, device);
        var request = await session.NextAsync();
        await probe.WaitAsync(rpc.Id, S.Sent);
        if (failure is { } status)
        {
            Assert.True(engine.Rpc.CompleteFailure(device.Id, request.RequestId, status, "edge said so"));
        }
        else
        {
            Assert.True(await engine.Rpc.CompleteReplyAsync(device.Id, request.RequestId, "42"));
        }

        await probe.WaitAsync(rpc.Id, expected);
        Assert.False(engine.Rpc.CompleteFailure(device.Id, request.RequestId, RpcStatus.Timeout, "again")); // it is over
        engine.Rpc.OnDelivered(device.Id, request.RequestId);
        Assert.Equal(expected, engine.Rpc.GetPersistent(rpc.Id)!.Status);
        Assert.Contains(failure is null ? "42" : "edge said so", engine.Rpc.GetPersistent(rpc.Id)!.ResponseJson, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Expiration_QueuedBecomesExpired_SentAndDeliveredBecomeTimeout()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path, o => o.RpcExpiryCheckIntervalMs = 20);
        using var probe = new RpcProbe(engine.Rpc);
        var (_, offline, _) = await Engines.CreateDeviceAsync(engine, "offline");
        var (_, online, _) = await Engines.CreateDeviceAsync(engine, "online");
        var silent = new RpcDeviceSession(online.Id, reportsDelivery: true);
        engine.Sessions.Register(silent);

        var queued = await SubmitAsync(engine, offline, expiresInMs: 300);
        var sent = await SubmitAsync(engine, online, expiresInMs: 300);
        var delivered = await SubmitAsync(engine, online, expiresInMs: 300);
        await silent.NextAsync();
        var second = await silent.NextAsync();
        engine.Rpc.OnDelivered(online.Id, second.RequestId);
        await probe.WaitAsync(delivered.Id, S.Delivered);

        Assert.Equal(S.Expired, (await probe.WaitAsync(queued.Id, S.Expired)).Status);
        await probe.WaitAsync(sent.Id, S.Timeout);
        await probe.WaitAsync(delivered.Id, S.Timeout);
        Assert.False(await engine.Rpc.CompleteReplyAsync(online.Id, second.RequestId, "{}"));

        // An expired request is never sent when the device shows up later.
        var late = new RpcDeviceSession(offline.Id);
        engine.Sessions.Register(late);
        Assert.Equal(0, await engine.Rpc.SweepExpiredAsync());
        Assert.False(late.TryNext(out _));
    }

    [Fact]
    public async Task RefusedPushes_AreRetried_ThenFailed_WhenRetriesAreExhausted()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        using var probe = new RpcProbe(engine.Rpc);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var rpc = await SubmitAsync(engine, device, retries: 1);
        Assert.Equal(1, rpc.Retries);

        var session = new RpcDeviceSession(device.Id, accept: false);
        engine.Sessions.Register(session);
        var requeued = await probe.WaitAsync(rpc.Id, S.Queued, attempts: 1);
        Assert.Equal(1, requeued.Attempts);

        engine.Sessions.SubscriptionsChanged(session); // the device is available again: second (last) attempt
        var failed = await probe.WaitAsync(rpc.Id, S.Failed);
        Assert.Equal(2, failed.Attempts);
        Assert.Equal(2, session.Refused);

        engine.Sessions.SubscriptionsChanged(session);
        Assert.Equal(S.Failed, engine.Rpc.GetPersistent(rpc.Id)!.Status);
    }

    [Fact]
    public async Task SentButUnacknowledged_IsResentToANewSession_CountingAnAttempt()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        using var probe = new RpcProbe(engine.Rpc);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var first = new RpcDeviceSession(device.Id, reportsDelivery: true);
        engine.Sessions.Register(first);
        var rpc = await SubmitAsync(engine, device, retries: 0);
        await first.NextAsync();
        await probe.WaitAsync(rpc.Id, S.Sent);

        engine.Sessions.Unregister(first);
        var second = new RpcDeviceSession(device.Id, reportsDelivery: true);
        engine.Sessions.Register(second);
        // retries: 0 means one attempt only: the lost attempt exhausts it.
        await probe.WaitAsync(rpc.Id, S.Failed);
        Assert.False(second.TryNext(out _));

        var again = await SubmitAsync(engine, device, retries: 3);
        var request = await second.NextAsync();
        Assert.Equal(again.RequestId, request.RequestId);
        engine.Sessions.Unregister(second);
        var third = new RpcDeviceSession(device.Id, reportsDelivery: true);
        engine.Sessions.Register(third);
        Assert.Equal(again.RequestId, (await third.NextAsync()).RequestId);
        engine.Rpc.OnDelivered(device.Id, again.RequestId);
        Assert.Equal(2, (await probe.WaitAsync(again.Id, S.Delivered)).Attempts);
    }

    [Fact]
    public async Task Delete_CancelsAnActiveRequest_WhichIsNeverSentAndIgnoresReplies()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        using var probe = new RpcProbe(engine.Rpc);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var queued = await SubmitAsync(engine, device);
        Assert.Equal(S.Deleted, (await engine.Rpc.DeletePersistentAsync(queued.Id))!.Status);
        Assert.Null(await engine.Rpc.DeletePersistentAsync(queued.Id));
        Assert.Null(await engine.Rpc.DeletePersistentAsync(Guid.NewGuid()));

        var session = new RpcDeviceSession(device.Id, reportsDelivery: true);
        engine.Sessions.Register(session);
        var sent = await SubmitAsync(engine, device);
        var request = await session.NextAsync();
        Assert.Equal(sent.Id, request.RpcId); // the deleted one was skipped
        await probe.WaitAsync(sent.Id, S.Sent);
        await engine.Rpc.DeletePersistentAsync(sent.Id);
        Assert.False(await engine.Rpc.CompleteReplyAsync(device.Id, request.RequestId, "{}"));
        Assert.Equal(S.Deleted, engine.Rpc.GetPersistent(sent.Id)!.Status);
    }

    [Fact]
    public async Task SequentialDelivery_SendsTheNextRequestOnlyAfterThePreviousFinished()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path, o => o.RpcSequentialDelivery = true);
        using var probe = new RpcProbe(engine.Rpc);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var a = await SubmitAsync(engine, device, method: "a");
        var b = await SubmitAsync(engine, device, method: "b");
        var session = new RpcDeviceSession(device.Id);
        engine.Sessions.Register(session);

        var first = await session.NextAsync();
        Assert.Equal("a", first.Method);
        await probe.WaitAsync(a.Id, S.Delivered);
        engine.Sessions.SubscriptionsChanged(session);
        Assert.False(session.TryNext(out _));
        Assert.Equal(S.Queued, engine.Rpc.GetPersistent(b.Id)!.Status);

        Assert.True(await engine.Rpc.CompleteReplyAsync(device.Id, first.RequestId, "{}"));
        Assert.Equal("b", (await session.NextAsync()).Method);
    }

    [Fact]
    public async Task AllAtOnce_WithoutSequentialDelivery()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        await SubmitAsync(engine, device, method: "a");
        await SubmitAsync(engine, device, method: "b");
        var session = new RpcDeviceSession(device.Id);
        engine.Sessions.Register(session);
        Assert.Equal("a", (await session.NextAsync()).Method);
        Assert.Equal("b", (await session.NextAsync()).Method);
    }

    [Fact]
    public async Task TtlCleanup_RemovesOnlyFinalRequests_AndRequestIdsKeepGrowing()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path, o => o.PersistentRpcTtlMs = 1);
        using var probe = new RpcProbe(engine.Rpc);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var done = await SubmitAsync(engine, device);
        await engine.Rpc.DeletePersistentAsync(done.Id);
        var active = await SubmitAsync(engine, device);
        var removed = await WaitForCleanupAsync(engine, 1);
        Assert.Equal(1, removed);
        Assert.Null(engine.Rpc.GetPersistent(done.Id));
        Assert.NotNull(engine.Rpc.GetPersistent(active.Id));
        Assert.Equal([active.Id], engine.Rpc.ListPersistent(device.Id).Select(r => r.Id));
        Assert.True((await SubmitAsync(engine, device)).RequestId > active.RequestId);
    }

    private static async Task<int> WaitForCleanupAsync(PerfEngine engine, int expected)
    {
        // TTL is 1 ms: the clock must move past the deletion time; yield until it has.
        var total = 0;
        var start = Environment.TickCount64;
        while (total < expected && Environment.TickCount64 - start < 5000)
        {
            total += await engine.Rpc.CleanupAsync();
            if (total < expected)
            {
                await Task.Delay(2);
            }
        }
        return total;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task QueuedAndFinalRequests_SurviveReopen_AndAreDeliveredWhenTheDeviceConnects(bool kill)
    {
        using var dir = new TempDir();
        Guid queuedId, doneId, deviceId;
        int lastRequestId;
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            using var probe = new RpcProbe(engine.Rpc);
            var (_, device, _) = await Engines.CreateDeviceAsync(engine);
            deviceId = device.Id;
            var session = new RpcDeviceSession(device.Id);
            engine.Sessions.Register(session);
            var done = await SubmitAsync(engine, device);
            var request = await session.NextAsync();
            await probe.WaitAsync(done.Id, S.Delivered);
            Assert.True(await engine.Rpc.CompleteReplyAsync(device.Id, request.RequestId, "{\"t\":1}"));
            engine.Sessions.Unregister(session);
            var queued = await SubmitAsync(engine, device);
            (queuedId, doneId, lastRequestId) = (queued.Id, done.Id, queued.RequestId);
            if (kill)
            {
                await engine.AbandonAsync();
            }
        }

        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            using var probe = new RpcProbe(engine.Rpc);
            var done = engine.Rpc.GetPersistent(doneId)!;
            Assert.Equal(S.Successful, done.Status);
            Assert.Equal("{\"t\":1}", done.ResponseJson);
            Assert.Equal("{\"note\":\"x\"}", done.AdditionalInfoJson);
            Assert.Equal(S.Queued, engine.Rpc.GetPersistent(queuedId)!.Status);

            var device = engine.Registry.GetDevice(deviceId)!;
            var session = new RpcDeviceSession(deviceId);
            engine.Sessions.Register(session);
            var request = await session.NextAsync();
            Assert.Equal(queuedId, request.RpcId);
            Assert.Equal(lastRequestId, request.RequestId);
            Assert.True(await engine.Rpc.CompleteReplyAsync(deviceId, request.RequestId, "{}"));
            Assert.Equal(S.Successful, engine.Rpc.GetPersistent(queuedId)!.Status);

            // Request ids are unique per device across restarts, lightweight ones included.
            Assert.True((await SubmitAsync(engine, device)).RequestId > lastRequestId);
            var light = engine.Rpc.SendAsync(deviceId, "m", "{}", oneWay: true, 5000, CancellationToken.None);
            RpcRequest? pushed;
            do
            {
                pushed = await session.NextAsync();
            }
            while (pushed.Persistent);
            Assert.True(pushed.RequestId > lastRequestId + 1);
            Assert.Equal(RpcStatus.Success, (await light).Status);
        }
    }

    [Fact]
    public async Task SentRequest_IsResentAfterRestart()
    {
        using var dir = new TempDir();
        Guid rpcId, deviceId;
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            using var probe = new RpcProbe(engine.Rpc);
            var (_, device, _) = await Engines.CreateDeviceAsync(engine);
            deviceId = device.Id;
            engine.Sessions.Register(new RpcDeviceSession(device.Id, reportsDelivery: true));
            rpcId = (await SubmitAsync(engine, device)).Id;
            await probe.WaitAsync(rpcId, S.Sent);
        }

        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            using var probe = new RpcProbe(engine.Rpc);
            Assert.Equal(S.Sent, engine.Rpc.GetPersistent(rpcId)!.Status);
            var session = new RpcDeviceSession(deviceId, reportsDelivery: true);
            engine.Sessions.Register(session);
            Assert.Equal(rpcId, (await session.NextAsync()).RpcId);
            await probe.WaitAsync(rpcId, S.Sent, attempts: 2);
        }
    }

    [Fact]
    public async Task DeletingTheDevice_DropsItsRequests_AlsoOnReplay()
    {
        using var dir = new TempDir();
        Guid rpcId;
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            var (_, device, _) = await Engines.CreateDeviceAsync(engine);
            rpcId = (await SubmitAsync(engine, device)).Id;
            Assert.True((await engine.Registry.DeleteDeviceAsync(device.Id)).IsOk);
            Assert.Null(engine.Rpc.GetPersistent(rpcId));
            Assert.Null(await engine.Rpc.SubmitPersistentAsync(device, "m", "{}", false, In(1000), null, null));
            await engine.AbandonAsync();
        }

        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            Assert.Null(engine.Rpc.GetPersistent(rpcId));
        }
    }
}
