using System.Text.Json;
using System.Text.Json.Nodes;
using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests;

public class AttributeTests
{
    [Fact]
    public async Task SharedAttributes_ArePushedToSubscribedSessions_AfterCommit_IncludingDeletes()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var listening = new FakeSession(device.Id);
        var deaf = new FakeSession(device.Id, "COAP", wantsAttributes: false);
        engine.Sessions.Register(listening);
        engine.Sessions.Register(deaf);

        Assert.True(await engine.Attributes.SaveAsync(device.Id, AttributeScope.Shared, [new KvEntry("target", 22L)]));
        Assert.True(await engine.Attributes.SaveAsync(device.Id, AttributeScope.Server, [new KvEntry("secret", "x")]));
        Assert.Equal(1, await engine.Attributes.DeleteAsync(device.Id, AttributeScope.Shared, ["target", "absent"]));

        var updates = listening.AttributeUpdates.ToArray();
        Assert.Equal(2, updates.Length); // server-scope save is not pushed
        Assert.Equal("target", Assert.Single(updates[0].Updated).Key);
        Assert.Equal(["target"], updates[1].Deleted);
        Assert.Empty(deaf.AttributeUpdates);
    }

    [Fact]
    public async Task DeviceApi_ClientAttributes_AndAttributeRequest()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        Assert.True((await engine.DeviceApi.PostAttributesAsync(device, Engines.Json("{\"a\":1,\"b\":\"two\"}"))).IsOk);
        await engine.Attributes.SaveAsync(device.Id, AttributeScope.Shared, [new KvEntry("s", true)]);
        var all = await engine.DeviceApi.RequestAttributesAsync(device, null, null);
        Assert.Equal(2, all.Client.Count);
        Assert.True(Assert.Single(all.Shared).Entry.BooleanValue);
        var some = await engine.DeviceApi.RequestAttributesAsync(device, ["b", "zz"], []);
        Assert.Equal("two", Assert.Single(some.Client).Entry.Text);
        Assert.Empty(some.Shared);
        // The reference's rule: a scope whose list names no key gives nothing when the other names one.
        var clientOnly = await engine.DeviceApi.RequestAttributesAsync(device, ["a"], null);
        Assert.Equal("a", Assert.Single(clientOnly.Client).Entry.Key);
        Assert.Empty(clientOnly.Shared);
        var sharedOnly = await engine.DeviceApi.RequestAttributesAsync(device, null, ["s"]);
        Assert.Empty(sharedOnly.Client);
        Assert.Equal("s", Assert.Single(sharedOnly.Shared).Entry.Key);
        var bothEmpty = await engine.DeviceApi.RequestAttributesAsync(device, [], []);
        Assert.Equal(2, bothEmpty.Client.Count);
        Assert.Single(bothEmpty.Shared);
        var observed = await engine.DeviceApi.RequestAttributesAsync(device, null, null, onlyShared: true);
        Assert.Empty(observed.Client);
        Assert.Single(observed.Shared);
        Assert.Equal(UplinkStatus.BadPayload, (await engine.DeviceApi.PostAttributesAsync(device, Engines.Json("[1,"))).Status);
    }

    [Fact]
    public async Task Claim_RecordsServerAttributes()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        Assert.True((await engine.DeviceApi.ClaimAsync(device, Engines.Json("{\"secretKey\":\"abc\",\"durationMs\":60000}"))).IsOk);
        Assert.True(engine.Attributes.TryGet(device.Id, AttributeScope.Server, "claimingAllowed", out var allowed));
        Assert.True(allowed.Entry.BooleanValue);
        Assert.True(engine.Attributes.TryGet(device.Id, AttributeScope.Server, "claimingData", out var data));
        using var doc = JsonDocument.Parse(data.Entry.Text!);
        Assert.Equal("abc", doc.RootElement.GetProperty("secretKey").GetString());
        Assert.True(doc.RootElement.GetProperty("expirationTime").GetInt64() > DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
    }

    [Theory]
    [InlineData("{\"secretKey\":5,\"durationMs\":\"60000\"}", "5", 60_000)]
    [InlineData("{\"secretKey\":true,\"durationMs\":60000.9}", "true", 60_000)]
    [InlineData("{\"secretKey\":{\"a\":1},\"durationMs\":null}", "", 30_000)]
    [InlineData("{\"durationMs\":-5}", "", 30_000)]
    public async Task Claim_ReadsItsFieldsAsTheReferenceDoes(string body, string secretKey, long durationMs)
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path, o => o.DefaultClaimDurationMs = 30_000);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var result = await engine.DeviceApi.ClaimAsync(device, Engines.Json(body));
        Assert.True(result.IsOk, result.Reason);
        Assert.True(engine.Attributes.TryGet(device.Id, AttributeScope.Server, "claimingData", out var data));
        using var doc = JsonDocument.Parse(data.Entry.Text!);
        Assert.Equal(secretKey, doc.RootElement.GetProperty("secretKey").GetString());
        var expires = doc.RootElement.GetProperty("expirationTime").GetInt64() - before;
        Assert.InRange(expires, durationMs - 1_000, durationMs + 5_000);
    }

    [Theory]
    [InlineData("{\"durationMs\":\"x\"}")]
    [InlineData("{\"durationMs\":true}")]
    [InlineData("{\"durationMs\":{}}")]
    [InlineData("{\"durationMs\":1e300}")]
    public async Task Claim_WithADurationThatIsNoNumber_IsABadPayload_NamingIt(string body)
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var result = await engine.DeviceApi.ClaimAsync(device, Engines.Json(body));
        Assert.Equal(UplinkStatus.BadPayload, result.Status);
        Assert.Contains("durationMs", result.Reason, StringComparison.Ordinal);
        Assert.False(engine.Attributes.TryGet(device.Id, AttributeScope.Server, "claimingData", out _));
    }

    [Fact]
    public async Task GetSessionLimits_AdvertisesOnlyTheLimitsEnforced_TheGatewaysAsGatewayRateLimits()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path, o =>
        {
            o.DeviceRateLimits = "5:10,100:60";
            o.GatewayRateLimits = "3:10";
        });
        var (_, device, _) = await Engines.CreateDeviceAsync(engine, "plain");
        var (_, gateway, _) = await Engines.CreateDeviceAsync(engine, "gw", "{\"gateway\":true}");
        var ask = Engines.Json("{\"method\":\"getSessionLimits\"}");

        var forDevice = JsonNode.Parse((await engine.DeviceApi.ClientRpcAsync(device, ask, CancellationToken.None)).ResponseJson!)!;
        Assert.Equal("""{"messages":"5:10,100:60","telemetryMessages":"5:10,100:60"}""", forDevice["rateLimits"]!.ToJsonString());
        Assert.Null(forDevice["gatewayRateLimits"]);

        var forGateway = JsonNode.Parse((await engine.DeviceApi.ClientRpcAsync(gateway, ask, CancellationToken.None)).ResponseJson!)!;
        Assert.Equal("""{"messages":"3:10","telemetryMessages":"3:10"}""", forGateway["gatewayRateLimits"]!.ToJsonString());
        Assert.Equal("{}", forGateway["rateLimits"]!.ToJsonString());
    }

    [Fact]
    public async Task GatewayChild_IsCreatedOnce_UnderGatewayTenant()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (tenant, gateway, _) = await Engines.CreateDeviceAsync(engine, "gw", "{\"gateway\":true}");
        var children = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => engine.DeviceApi.GetOrCreateGatewayChildAsync(gateway, "child-A", "sensor").AsTask()));
        Assert.Single(children.Select(c => c.Id).Distinct());
        Assert.Equal(tenant, children[0].TenantId);
        Assert.Equal("sensor", children[0].Type);
        Assert.Contains(gateway.Id.ToString(), children[0].AdditionalInfoJson, StringComparison.Ordinal);
    }
}

public class RpcTests
{
    [Fact]
    public async Task TwoWay_IsDelivered_AndCompletesWithDeviceReply()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var session = new FakeSession(device.Id);
        engine.Sessions.Register(session);

        var call = engine.Rpc.SendAsync(device.Id, "setGpio", "{\"pin\":1}", oneWay: false, 10_000, CancellationToken.None);
        var request = await session.FirstRpc;
        Assert.Equal("setGpio", request.Method);
        Assert.Equal("{\"pin\":1}", request.ParamsJson);
        Assert.True((await engine.DeviceApi.RpcReplyAsync(device, request.RequestId, Engines.Json("{\"ok\":true}"))).IsOk);
        var outcome = await call;
        Assert.Equal(RpcStatus.Success, outcome.Status);
        Assert.Equal("{\"ok\":true}", outcome.ResponseJson);
        Assert.Equal(0, engine.Rpc.PendingCount(device.Id));
        Assert.Equal(UplinkStatus.NotFound, (await engine.DeviceApi.RpcReplyAsync(device, request.RequestId, Engines.Json("{}"))).Status);
    }

    [Fact]
    public async Task Request_WaitsForSessionToConnect_ThenOneWayCompletesOnDelivery()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var call = engine.Rpc.SendAsync(device.Id, "reboot", "", oneWay: true, 10_000, CancellationToken.None);
        Assert.False(call.IsCompleted);
        var session = new FakeSession(device.Id, wantsRpc: false);
        engine.Sessions.Register(session);
        Assert.False(call.IsCompleted);
        session.WantsRpc = true;
        engine.Sessions.SubscriptionsChanged(session);
        Assert.Equal(RpcStatus.Success, (await call).Status);
        Assert.Equal("reboot", (await session.FirstRpc).Method);
    }

    [Fact]
    public async Task NoSession_IsDeviceOffline_DeliveredButUnanswered_IsTimeout()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        Assert.Equal(RpcStatus.DeviceOffline, (await engine.Rpc.SendAsync(device.Id, "m", "{}", false, 50, CancellationToken.None)).Status);
        engine.Sessions.Register(new FakeSession(device.Id));
        Assert.Equal(RpcStatus.Timeout, (await engine.Rpc.SendAsync(device.Id, "m", "{}", false, 50, CancellationToken.None)).Status);
    }

    [Fact]
    public async Task PendingCapPerDevice_YieldsTooManyRequests()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path, o => o.MaxPendingRpcPerDevice = 2);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        using var cts = new CancellationTokenSource();
        var a = engine.Rpc.SendAsync(device.Id, "m", "{}", false, 60_000, cts.Token);
        var b = engine.Rpc.SendAsync(device.Id, "m", "{}", false, 60_000, cts.Token);
        Assert.Equal(RpcStatus.TooManyRequests, (await engine.Rpc.SendAsync(device.Id, "m", "{}", false, 60_000, CancellationToken.None)).Status);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => b);
        Assert.Equal(0, engine.Rpc.PendingCount(device.Id));
    }

    [Fact]
    public async Task EveryLightweightOutcome_IsCounted_ByItsStatus()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path, o => o.MaxPendingRpcPerDevice = 1);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        RpcStatus[] statuses = [RpcStatus.Success, RpcStatus.DeviceOffline, RpcStatus.Timeout, RpcStatus.TooManyRequests];
        // Process-wide counters that other tests move too: each must have grown by at least this test's one.
        var before = statuses.Select(Perf.Core.Internal.CoreMetrics.RpcOutcomeCount).ToArray();

        Assert.Equal(RpcStatus.DeviceOffline, (await engine.Rpc.SendAsync(device.Id, "m", "{}", false, 50, CancellationToken.None)).Status);
        var session = new FakeSession(device.Id);
        engine.Sessions.Register(session);
        Assert.Equal(RpcStatus.Timeout, (await engine.Rpc.SendAsync(device.Id, "m", "{}", false, 50, CancellationToken.None)).Status);
        var call = engine.Rpc.SendAsync(device.Id, "m", "{}", false, 10_000, CancellationToken.None);
        Assert.Equal(RpcStatus.TooManyRequests, (await engine.Rpc.SendAsync(device.Id, "m", "{}", false, 10_000, CancellationToken.None)).Status);
        // Delivered before SendAsync first awaits: the timed-out request, then the pending one.
        var delivered = session.Rpcs.ToArray();
        Assert.Equal(2, delivered.Length);
        var request = delivered[1];
        Assert.True((await engine.DeviceApi.RpcReplyAsync(device, request.RequestId, Engines.Json("{}"))).IsOk);
        Assert.Equal(RpcStatus.Success, (await call).Status);

        var after = statuses.Select(Perf.Core.Internal.CoreMetrics.RpcOutcomeCount).ToArray();
        Assert.All(statuses.Select((status, i) => (status, grown: after[i] - before[i])), s => Assert.True(s.grown >= 1, $"{s.status} not counted"));
    }

    [Fact]
    public async Task ClientRpc_BuiltIns_HandlerAndMissingHandler()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);

        var time = await engine.DeviceApi.ClientRpcAsync(device, Engines.Json("{\"method\":\"getCurrentTime\",\"params\":{}}"), CancellationToken.None);
        using (var doc = JsonDocument.Parse(time.ResponseJson!))
        {
            Assert.True(doc.RootElement.GetProperty("currentTime").GetInt64() > 0);
        }
        var limits = await engine.DeviceApi.ClientRpcAsync(device, Engines.Json("{\"method\":\"getSessionLimits\"}"), CancellationToken.None);
        using (var doc = JsonDocument.Parse(limits.ResponseJson!))
        {
            Assert.Equal(65536, doc.RootElement.GetProperty("maxPayloadSize").GetInt32());
            Assert.Equal(JsonValueKind.Object, doc.RootElement.GetProperty("rateLimits").ValueKind);
        }
        var missing = await engine.DeviceApi.ClientRpcAsync(device, Engines.Json("{\"method\":\"foo\"}"), CancellationToken.None);
        Assert.Contains("no handler for method 'foo'", missing.ResponseJson, StringComparison.Ordinal);

        engine.Rpc.ClientRpcHandler = (d, method, p, _) => ValueTask.FromResult($"{{\"echo\":\"{method}\",\"params\":{p}}}");
        var echoed = await engine.DeviceApi.ClientRpcAsync(device, Engines.Json("{\"method\":\"foo\",\"params\":[1]}"), CancellationToken.None);
        Assert.Equal("{\"echo\":\"foo\",\"params\":[1]}", echoed.ResponseJson);
        Assert.Equal(UplinkStatus.BadPayload, (await engine.DeviceApi.ClientRpcAsync(device, Engines.Json("{}"), CancellationToken.None)).Result.Status);
    }
}
