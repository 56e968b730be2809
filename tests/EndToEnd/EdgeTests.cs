using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Grpc.Core;
using Perf.Api.Edge.Protos;
using Perf.Api.Edge.Protos.Transport;
using Perf.Core;

namespace Perf.EndToEnd;

/// <summary>The edge door end to end: a Grpc.Net.Client edge against the real host.</summary>
[Collection(HostCollection.Name)]
public sealed class EdgeTests(HostFixture fixture)
{
    private int EdgePort => fixture.Endpoints.Edges!.Port;

    private static async Task<(string Id, string RoutingKey, string Secret)> CreateEdgeAsync(Rest rest)
    {
        var routingKey = "rk-" + Guid.NewGuid().ToString("N");
        var edge = await rest.PostAsync("/api/edge", new { name = "edge-" + Guid.NewGuid().ToString("N")[..8], type = "default", routingKey, secret = "s3cret" });
        Assert.Equal(routingKey, edge["routingKey"]!.GetValue<string>());
        return (edge["id"]!["id"]!.GetValue<string>(), routingKey, "s3cret");
    }

    [Fact]
    public async Task TheEdgePort_ServesOnlyTheEdgeProtocol_AndTheHttpPortNotIt()
    {
        // As the reference's port 7070: opening it to the edges must not open the REST API, the console or the metrics.
        using var h2 = new HttpClient { DefaultRequestVersion = System.Net.HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        foreach (var path in new[] { "/api/tenant/edges?pageSize=1&page=0", "/health", "/metrics", "/" })
        {
            var response = await h2.GetAsync($"http://127.0.0.1:{EdgePort}{path}");
            Assert.Equal(System.Net.HttpStatusCode.NotFound, response.StatusCode);
        }

        var login = await h2.PostAsJsonAsync($"http://127.0.0.1:{EdgePort}/api/auth/login", new { username = "tenant@example.com", password = "tenant" });
        Assert.Equal(System.Net.HttpStatusCode.NotFound, login.StatusCode);
        using var http = fixture.CreateHttpClient();
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await http.PostAsync("/edge.EdgeRpcService/handleMsgs", new ByteArrayContent([]))).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/health")).StatusCode);
    }

    [Fact]
    public async Task Connect_WithBadCredentials_AnswersBadCredentialsAndEndsTheStreamWithAnError()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (_, routingKey, _) = await CreateEdgeAsync(rest);
        await using var edge = new EdgeTestClient(EdgePort);
        var response = await edge.ConnectAsync(routingKey, "wrong");
        Assert.Equal(ConnectResponseCode.BadCredentials, response.ResponseCode);
        var error = await Assert.ThrowsAsync<RpcException>(() => edge.Completion.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
    }

    [Fact]
    public async Task FirstMessage_ThatIsNotAConnect_IsRejected()
    {
        await using var edge = new EdgeTestClient(EdgePort);
        await edge.SendAsync(new RequestMsg { MsgType = RequestMsgType.UplinkRpcMessage, UplinkMsg = new UplinkMsg { UplinkMsgId = 1 } });
        var error = await Assert.ThrowsAsync<RpcException>(() => edge.Completion.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(StatusCode.FailedPrecondition, error.StatusCode);
    }

    [Fact]
    public async Task FirstConnect_IsAccepted_AndFullSyncsAssignedDevices_EndingWithSyncCompleted()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (edgeId, routingKey, secret) = await CreateEdgeAsync(rest);
        var (d1, _) = await rest.CreateDeviceAsync("edge-sync-1-" + Guid.NewGuid().ToString("N")[..6]);
        var (d2, token2) = await rest.CreateDeviceAsync("edge-sync-2-" + Guid.NewGuid().ToString("N")[..6]);
        await rest.PostAsync($"/api/edge/{edgeId}/device/{d1}", new { });
        await rest.PostAsync($"/api/edge/{edgeId}/device/{d2}", new { });
        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{d2}/SHARED_SCOPE", new { target = 21 });

        await using var edge = new EdgeTestClient(EdgePort);
        var connect = await edge.ConnectAsync(routingKey, secret, EdgeVersion.V440, maxInbound: 1 << 20);
        Assert.Equal(ConnectResponseCode.Accepted, connect.ResponseCode);
        Assert.Equal(Guid.Parse(edgeId), EdgeTestClient.Id(connect.Configuration.EdgeIdMSB, connect.Configuration.EdgeIdLSB));
        Assert.Equal(routingKey, connect.Configuration.RoutingKey);
        Assert.True(connect.MaxInboundMessageSize > 0);

        var synced = await edge.UntilSyncCompletedAsync();
        var devices = synced.SelectMany(m => m.DeviceUpdateMsg).Select(u => EdgeTestClient.Id(u.IdMSB, u.IdLSB).ToString()).ToHashSet();
        Assert.Contains(d1, devices);
        Assert.Contains(d2, devices);
        Assert.Contains(synced, m => m.DeviceCredentialsUpdateMsg.Any(c => c.Entity.Contains(token2, StringComparison.Ordinal)));
        Assert.Contains(synced, m => m.EntityData.Any(e => e.AttributesUpdatedMsg?.Kv.Any(kv => kv.Key == "target" && kv.LongV == 21) == true));
        Assert.NotNull(synced[^1].SyncCompletedMsg);

        // The edge's own full-sync request right after its first connect (a real edge sends one) is the sync already
        // done, not a second one; afterwards only changes: a new shared attribute arrives alone.
        // First the server takes the sync's acknowledgements (the client acks each downlink as it reads it; the
        // server applies them on its own pump, which no answer of the stream signals).
        await Eventually.TrueAsync(async () => (await rest.GetAsync($"/api/edge/{edgeId}"))["additionalInfo"]!["pendingDownlinks"]!.GetValue<int>() == 0);

        await edge.RequestSyncAsync(fullSync: true);
        Assert.True((await edge.UplinkAsync(new UplinkMsg())).Success); // the stream is read in order: the request is handled
        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{d1}/SHARED_SCOPE", new { mode = "eco" });
        var change = await edge.NextDownlinkAsync(m => m.EntityData.Count > 0 || m.DeviceUpdateMsg.Count > 0 || m.SyncCompletedMsg is not null);
        Assert.Null(change.SyncCompletedMsg);
        Assert.Empty(change.DeviceUpdateMsg);
        Assert.Equal("mode", change.EntityData[0].AttributesUpdatedMsg.Kv[0].Key);

        var info = await rest.GetAsync($"/api/edge/{edgeId}");
        Assert.Equal("V_4_4_0", info["additionalInfo"]!["edgeVersion"]!.GetValue<string>()); // the reference's name of the version
        Assert.True(info["additionalInfo"]!["connected"]!.GetValue<bool>());

        // Saving the edge tells the connected edge its new configuration (EdgeUpdateMsg).
        info["name"] = "edge-renamed-" + Guid.NewGuid().ToString("N")[..6];
        await rest.PostAsync("/api/edge", info);
        Assert.Equal(info["name"]!.GetValue<string>(), (await edge.NextEdgeUpdateAsync()).Configuration.Name);

        // A forced sync (REST) sends everything again, ending with syncCompletedMsg.
        await rest.PostAsync($"/api/edge/sync/{edgeId}", new { });
        var resynced = await edge.UntilSyncCompletedAsync();
        Assert.Contains(resynced, m => m.DeviceUpdateMsg.Any(u => EdgeTestClient.Id(u.IdMSB, u.IdLSB).ToString() == d2));
    }

    [Fact]
    public async Task UplinkedTelemetryAndAttributes_AreAcknowledgedByIdAndReadableOverRest()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var metricsBefore = await rest.Http.GetStringAsync("/metrics");
        var (edgeId, routingKey, secret) = await CreateEdgeAsync(rest);
        var (deviceId, _) = await rest.CreateDeviceAsync("edge-up-" + Guid.NewGuid().ToString("N")[..6]);
        await rest.PostAsync($"/api/edge/{edgeId}/device/{deviceId}", new { });
        await using var edge = new EdgeTestClient(EdgePort);
        Assert.Equal(ConnectResponseCode.Accepted, (await edge.ConnectAsync(routingKey, secret)).ResponseCode);

        var (msb, lsb) = EdgeTestClient.Split(Guid.Parse(deviceId));
        var uplink = new UplinkMsg();
        for (var i = 0; i < 50; i++)
        {
            var telemetry = new PostTelemetryMsg();
            var list = new TsKvListProto { Ts = 1_000 + i };
            list.Kv.Add(new KeyValueProto { Key = "temperature", Type = KeyValueType.DoubleV, DoubleV = 20 + i });
            telemetry.TsKvList.Add(list);
            uplink.EntityData.Add(new EntityDataProto { EntityIdMSB = msb, EntityIdLSB = lsb, EntityType = "DEVICE", PostTelemetryMsg = telemetry });
        }
        var attributes = new PostAttributeMsg();
        attributes.Kv.Add(new KeyValueProto { Key = "firmware", Type = KeyValueType.StringV, StringV = "1.2" });
        uplink.EntityData[0].PostAttributesMsg = attributes;
        uplink.EntityData[0].PostAttributeScope = "CLIENT_SCOPE";

        var response = await edge.UplinkAsync(uplink);
        Assert.True(response.Success, response.ErrorMsg);
        Assert.Equal(uplink.UplinkMsgId, response.UplinkMsgId);

        var latest = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys=temperature&useStrictDataTypes=true");
        Assert.Equal(69.0, latest["temperature"]![0]!["value"]!.GetValue<double>());
        var history = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys=temperature&startTs=0&endTs=5000&limit=100");
        Assert.Equal(50, history["temperature"]!.AsArray().Count);
        var client = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/values/attributes/CLIENT_SCOPE");
        Assert.Contains(client.AsArray(), a => a!["key"]!.GetValue<string>() == "firmware");

        // More than 50 events in one message is answered success=false with the same id.
        uplink.EntityData.Add(uplink.EntityData[1].Clone());
        var tooBig = await edge.UplinkAsync(uplink);
        Assert.False(tooBig.Success);
        Assert.Equal(uplink.UplinkMsgId, tooBig.UplinkMsgId);

        // An unknown device, or an entity type the server keeps no data for, is skipped and the uplink acknowledged,
        // as the reference does (a refusal would make the edge retry the whole pack); the known device's data in the
        // same uplink is saved.
        var unknown = new UplinkMsg();
        var (umsb, ulsb) = EdgeTestClient.Split(Guid.NewGuid());
        unknown.EntityData.Add(new EntityDataProto { EntityIdMSB = umsb, EntityIdLSB = ulsb, EntityType = "DEVICE", PostTelemetryMsg = uplink.EntityData[1].PostTelemetryMsg });
        unknown.EntityData.Add(new EntityDataProto { EntityIdMSB = umsb, EntityIdLSB = ulsb, EntityType = "ASSET", PostTelemetryMsg = uplink.EntityData[1].PostTelemetryMsg });
        var known = new PostTelemetryMsg();
        known.TsKvList.Add(new TsKvListProto { Ts = 6_000, Kv = { new KeyValueProto { Key = "temperature", Type = KeyValueType.LongV, LongV = 7 } } });
        unknown.EntityData.Add(new EntityDataProto { EntityIdMSB = msb, EntityIdLSB = lsb, EntityType = "DEVICE", PostTelemetryMsg = known });
        Assert.True((await edge.UplinkAsync(unknown)).Success);
        Assert.Equal(7, (await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys=temperature&useStrictDataTypes=true"))["temperature"]![0]!["value"]!.GetValue<long>());

        // The edge door's counters moved: accepted and refused uplinks, and the sync's downlinks.
        var metricsAfter = await rest.Http.GetStringAsync("/metrics");
        double Delta(string family, string? label = null) => MetricsTests.Sum(metricsAfter, family, label) - MetricsTests.Sum(metricsBefore, family, label);
        Assert.True(Delta("perf_edge_messages_in", "outcome=\"ok\"") >= 2, metricsAfter);
        Assert.True(Delta("perf_edge_messages_in", "outcome=\"refused\"") >= 1, metricsAfter);
        Assert.True(Delta("perf_edge_bytes_in") > 0);
        Assert.True(Delta("perf_edge_messages_out") >= 1);
    }

    [Fact]
    public async Task DeviceCreatedOnTheEdge_KeepsItsId_AndCredentials_AndANameTakenOnTheServerGetsASuffixSentBack()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (edgeId, routingKey, secret) = await CreateEdgeAsync(rest);
        var (serverDevice, _) = await rest.CreateDeviceAsync("edge-taken-" + Guid.NewGuid().ToString("N")[..6]);
        var serverName = (await rest.GetAsync($"/api/device/{serverDevice}"))["name"]!.GetValue<string>();
        await using var edge = new EdgeTestClient(EdgePort);
        Assert.Equal(ConnectResponseCode.Accepted, (await edge.ConnectAsync(routingKey, secret)).ResponseCode);
        await edge.UntilSyncCompletedAsync();

        // As the reference's saveOrUpdateDevice: the edge's id is kept, the device is the edge's, and its credentials
        // are the ones the edge sends (DeviceCredentialsUpdateMsg in the uplink).
        var id = Guid.NewGuid();
        var (msb, lsb) = EdgeTestClient.Split(id);
        var name = "edge-made-" + Guid.NewGuid().ToString("N")[..6];
        var token = "edge-token-" + Guid.NewGuid().ToString("N")[..8];
        var created = new UplinkMsg();
        created.DeviceUpdateMsg.Add(new DeviceUpdateMsg
        {
            MsgType = UpdateMsgType.EntityCreatedRpcMessage, IdMSB = msb, IdLSB = lsb,
            Entity = $$"""{"name":"{{name}}","type":"thermostat","label":"Room 1"}""",
        });
        created.DeviceCredentialsUpdateMsg.Add(new DeviceCredentialsUpdateMsg
        {
            Entity = $$"""{"deviceId":{"entityType":"DEVICE","id":"{{id}}"},"credentialsType":"ACCESS_TOKEN","credentialsId":"{{token}}","credentialsValue":null}""",
        });
        var telemetry = new PostTelemetryMsg();
        telemetry.TsKvList.Add(new TsKvListProto { Ts = 1_000, Kv = { new KeyValueProto { Key = "t", Type = KeyValueType.LongV, LongV = 5 } } });
        created.EntityData.Add(new EntityDataProto { EntityIdMSB = msb, EntityIdLSB = lsb, EntityType = "DEVICE", PostTelemetryMsg = telemetry });
        var response = await edge.UplinkAsync(created);
        Assert.True(response.Success, response.ErrorMsg);

        var device = await rest.GetAsync($"/api/device/{id}");
        Assert.Equal((name, "thermostat"), (device["name"]!.GetValue<string>(), device["type"]!.GetValue<string>()));
        Assert.Equal(token, (await rest.GetAsync($"/api/device/{id}/credentials"))["credentialsId"]!.GetValue<string>());
        Assert.Equal(5, (await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=t&useStrictDataTypes=true"))["t"]![0]!["value"]!.GetValue<long>());
        Assert.Contains((await rest.GetAsync($"/api/edge/{edgeId}/devices?pageSize=100&page=0"))["data"]!.AsArray(), d => d!["id"]!["id"]!.GetValue<string>() == id.ToString());

        // A name another server device has: that device is untouched; the edge's gets a suffix, sent back to the edge.
        var other = Guid.NewGuid();
        var (omsb, olsb) = EdgeTestClient.Split(other);
        var clash = new UplinkMsg();
        clash.DeviceUpdateMsg.Add(new DeviceUpdateMsg
        {
            MsgType = UpdateMsgType.EntityCreatedRpcMessage, IdMSB = omsb, IdLSB = olsb, Entity = $$"""{"name":"{{serverName}}","type":"zzz","label":"edge's"}""",
        });
        Assert.True((await edge.UplinkAsync(clash)).Success);
        var untouched = await rest.GetAsync($"/api/device/{serverDevice}");
        Assert.Equal((serverName, "default"), (untouched["name"]!.GetValue<string>(), untouched["type"]!.GetValue<string>()));
        var renamed = (await rest.GetAsync($"/api/device/{other}"))["name"]!.GetValue<string>();
        Assert.StartsWith(serverName + "_", renamed, StringComparison.Ordinal);
        var rename = await edge.NextDownlinkAsync(m => m.DeviceUpdateMsg.Count > 0);
        Assert.Equal(other, EdgeTestClient.Id(rename.DeviceUpdateMsg[0].IdMSB, rename.DeviceUpdateMsg[0].IdLSB));
        Assert.Contains(renamed, rename.DeviceUpdateMsg[0].Entity, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WhatAnEdgeChanges_IsNotEchoedBackToIt_ButOtherChangesStillArrive()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (edgeId, routingKey, secret) = await CreateEdgeAsync(rest);
        var name = "edge-echo-" + Guid.NewGuid().ToString("N")[..6];
        var (deviceId, _) = await rest.CreateDeviceAsync(name);
        await rest.PostAsync($"/api/edge/{edgeId}/device/{deviceId}", new { });
        await using var edge = new EdgeTestClient(EdgePort);
        Assert.Equal(ConnectResponseCode.Accepted, (await edge.ConnectAsync(routingKey, secret)).ResponseCode);
        await edge.UntilSyncCompletedAsync();
        var (msb, lsb) = EdgeTestClient.Split(Guid.Parse(deviceId));

        // The edge's own shared attribute and device change (the reference's TbMsgPushToEdgeNode skips what came
        // from an edge): a stale echo would overwrite a newer value on the edge.
        var own = new UplinkMsg();
        own.EntityData.Add(new EntityDataProto
        {
            EntityIdMSB = msb, EntityIdLSB = lsb, EntityType = "DEVICE", PostAttributeScope = "SHARED_SCOPE",
            AttributesUpdatedMsg = new PostAttributeMsg { Kv = { new KeyValueProto { Key = "fromEdge", Type = KeyValueType.LongV, LongV = 1 } } },
        });
        own.DeviceUpdateMsg.Add(new DeviceUpdateMsg
        {
            MsgType = UpdateMsgType.EntityUpdatedRpcMessage, IdMSB = msb, IdLSB = lsb, Entity = $$"""{"name":"{{name}}","type":"default","label":"edge label"}""",
        });
        Assert.True((await edge.UplinkAsync(own)).Success);
        Assert.Equal("edge label", (await rest.GetAsync($"/api/device/{deviceId}"))["label"]!.GetValue<string>());

        // What the server changes still arrives, and it is the first downlink after the edge's own changes.
        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/SHARED_SCOPE", new { fromServer = 2 });
        var first = await edge.NextDownlinkAsync(m => m.EntityData.Count > 0 || m.DeviceUpdateMsg.Count > 0);
        Assert.Empty(first.DeviceUpdateMsg);
        Assert.Equal("fromServer", Assert.Single(first.EntityData[0].AttributesUpdatedMsg.Kv).Key);
    }

    [Fact]
    public async Task AnUplinkUpToTheAdvertisedSize_IsSavedInParts_AndAValueNoRecordHolds_IsRefusedAlone()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (edgeId, routingKey, secret) = await CreateEdgeAsync(rest);
        var (deviceId, _) = await rest.CreateDeviceAsync("edge-big-" + Guid.NewGuid().ToString("N")[..6]);
        await rest.PostAsync($"/api/edge/{edgeId}/device/{deviceId}", new { });
        await using var edge = new EdgeTestClient(EdgePort);
        Assert.Equal(ConnectResponseCode.Accepted, (await edge.ConnectAsync(routingKey, secret)).ResponseCode);
        var (msb, lsb) = EdgeTestClient.Split(Guid.Parse(deviceId));

        // 3 MB for one device in one uplink (30 values of 100 KB): more than one log record holds, saved in parts.
        var telemetry = new PostTelemetryMsg();
        for (var i = 0; i < 30; i++)
        {
            telemetry.TsKvList.Add(new TsKvListProto { Ts = 1_000 + i, Kv = { new KeyValueProto { Key = "blob", Type = KeyValueType.StringV, StringV = new string((char)('a' + i % 26), 100_000) } } });
        }
        var big = new UplinkMsg();
        big.EntityData.Add(new EntityDataProto { EntityIdMSB = msb, EntityIdLSB = lsb, EntityType = "DEVICE", PostTelemetryMsg = telemetry });
        var response = await edge.UplinkAsync(big);
        Assert.True(response.Success, response.ErrorMsg);
        var history = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys=blob&startTs=0&endTs=5000&limit=100");
        Assert.Equal(30, history["blob"]!.AsArray().Count);

        // One 3 MB value: no record holds it; refused with the reason, and the stream goes on.
        var huge = new PostTelemetryMsg();
        huge.TsKvList.Add(new TsKvListProto { Ts = 9_000, Kv = { new KeyValueProto { Key = "huge", Type = KeyValueType.StringV, StringV = new string('h', 3_000_000) } } });
        var refused = new UplinkMsg();
        refused.EntityData.Add(new EntityDataProto { EntityIdMSB = msb, EntityIdLSB = lsb, EntityType = "DEVICE", PostTelemetryMsg = huge });
        var answer = await edge.UplinkAsync(refused);
        Assert.False(answer.Success);
        Assert.Contains("larger than the largest the log takes", answer.ErrorMsg, StringComparison.Ordinal);
        Assert.True((await edge.UplinkAsync(new UplinkMsg())).Success);
    }

    [Fact]
    public async Task Rpc_ToADeviceBehindTheEdge_GoesThroughTheEdge_AndItsReplyCompletesTheCall()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (edgeId, routingKey, secret) = await CreateEdgeAsync(rest);
        var (deviceId, _) = await rest.CreateDeviceAsync("edge-rpc-" + Guid.NewGuid().ToString("N")[..6]);
        await rest.PostAsync($"/api/edge/{edgeId}/device/{deviceId}", new { });
        await using var edge = new EdgeTestClient(EdgePort);
        Assert.Equal(ConnectResponseCode.Accepted, (await edge.ConnectAsync(routingKey, secret)).ResponseCode);
        await edge.UntilSyncCompletedAsync();

        var call = rest.Http.PostAsync($"/api/plugins/rpc/twoway/{deviceId}",
            new StringContent("""{"method":"setGpio","params":{"pin":7,"value":1},"timeout":10000}""", System.Text.Encoding.UTF8, "application/json"));
        var downlink = await edge.NextDownlinkAsync(m => m.DeviceRpcCallMsg.Count > 0);
        var request = downlink.DeviceRpcCallMsg[0];
        Assert.Equal(deviceId, EdgeTestClient.Id(request.DeviceIdMSB, request.DeviceIdLSB).ToString());
        Assert.Equal("setGpio", request.RequestMsg.Method);
        Assert.Contains("\"pin\":7", request.RequestMsg.Params, StringComparison.Ordinal);

        var reply = new UplinkMsg();
        reply.DeviceRpcCallMsg.Add(new DeviceRpcCallMsg
        {
            DeviceIdMSB = request.DeviceIdMSB,
            DeviceIdLSB = request.DeviceIdLSB,
            RequestUuidMSB = request.RequestUuidMSB,
            RequestUuidLSB = request.RequestUuidLSB,
            RequestId = request.RequestId,
            ResponseMsg = new RpcResponseMsg { Response = """{"pin":7,"value":1,"ok":true}""" },
        });
        Assert.True((await edge.UplinkAsync(reply)).Success);
        var outcome = await call.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(System.Net.HttpStatusCode.OK, outcome.StatusCode);
        Assert.Equal("""{"pin":7,"value":1,"ok":true}""", await outcome.Content.ReadAsStringAsync());

        // The core API directly (what every door's RPC uses) takes the same path.
        var direct = fixture.Host.Engine.Rpc.SendAsync(Guid.Parse(deviceId), "ping", "{}", oneWay: false, timeoutMs: 10_000, CancellationToken.None);
        var ping = (await edge.NextDownlinkAsync(m => m.DeviceRpcCallMsg.Any(c => c.RequestMsg?.Method == "ping"))).DeviceRpcCallMsg[0];
        var pong = new UplinkMsg();
        pong.DeviceRpcCallMsg.Add(new DeviceRpcCallMsg
        {
            DeviceIdMSB = ping.DeviceIdMSB,
            DeviceIdLSB = ping.DeviceIdLSB,
            RequestId = ping.RequestId,
            ResponseMsg = new RpcResponseMsg { Error = "TIMEOUT" },
        });
        Assert.True((await edge.UplinkAsync(pong)).Success);
        // An edge's RpcError is not a reply: its device did not answer in time (the reference's TIMEOUT).
        Assert.Equal(RpcStatus.Timeout, (await direct.WaitAsync(TimeSpan.FromSeconds(10))).Status);

        // NO_ACTIVE_CONNECTION (the edge's device is offline) answers 409, as the reference's AbstractRpcController.
        var offline = rest.Http.PostAsync($"/api/plugins/rpc/twoway/{deviceId}",
            new StringContent("""{"method":"offline","params":{},"timeout":10000}""", System.Text.Encoding.UTF8, "application/json"));
        var offlineCall = (await edge.NextDownlinkAsync(m => m.DeviceRpcCallMsg.Any(c => c.RequestMsg?.Method == "offline"))).DeviceRpcCallMsg[0];
        var noConnection = new UplinkMsg();
        noConnection.DeviceRpcCallMsg.Add(new DeviceRpcCallMsg
        {
            DeviceIdMSB = offlineCall.DeviceIdMSB,
            DeviceIdLSB = offlineCall.DeviceIdLSB,
            RequestId = offlineCall.RequestId,
            ResponseMsg = new RpcResponseMsg { Error = "NO_ACTIVE_CONNECTION" },
        });
        Assert.True((await edge.UplinkAsync(noConnection)).Success);
        Assert.Equal(System.Net.HttpStatusCode.Conflict, (await offline.WaitAsync(TimeSpan.FromSeconds(10))).StatusCode);

        // A persistent RPC: DELIVERED when the edge acknowledges its downlink, SUCCESSFUL with the reply.
        var rpcId = (await rest.PostAsync($"/api/rpc/twoway/{deviceId}", new { method = "reboot", @params = new { }, persistent = true, timeout = 60000 }))["rpcId"]!.GetValue<string>();
        var reboot = (await edge.NextDownlinkAsync(m => m.DeviceRpcCallMsg.Any(c => c.RequestMsg?.Method == "reboot"))).DeviceRpcCallMsg[0];
        Assert.True(reboot.Persisted);
        await WaitForRpcStatusAsync(rest, rpcId, "DELIVERED");
        var rebooted = new UplinkMsg();
        rebooted.DeviceRpcCallMsg.Add(new DeviceRpcCallMsg
        {
            DeviceIdMSB = reboot.DeviceIdMSB,
            DeviceIdLSB = reboot.DeviceIdLSB,
            RequestId = reboot.RequestId,
            ResponseMsg = new RpcResponseMsg { Response = """{"rebooted":true}""" },
        });
        Assert.True((await edge.UplinkAsync(rebooted)).Success);
        await WaitForRpcStatusAsync(rest, rpcId, "SUCCESSFUL");

        // The other way: a client-side RPC of the device, uplinked by the edge, answered by a downlink.
        var clientRpc = new UplinkMsg();
        clientRpc.DeviceRpcCallMsg.Add(new DeviceRpcCallMsg
        {
            DeviceIdMSB = request.DeviceIdMSB,
            DeviceIdLSB = request.DeviceIdLSB,
            RequestId = 77,
            RequestMsg = new RpcRequestMsg { Method = "getCurrentTime", Params = "{}" },
        });
        Assert.True((await edge.UplinkAsync(clientRpc)).Success);
        var answer = await edge.NextDownlinkAsync(m => m.DeviceRpcCallMsg.Any(c => c.RequestId == 77 && c.ResponseMsg is not null));
        Assert.Contains("currentTime", answer.DeviceRpcCallMsg[0].ResponseMsg.Response, StringComparison.Ordinal);
    }

    private static async Task WaitForRpcStatusAsync(Rest rest, string rpcId, string status)
    {
        string? last = null;
        for (var i = 0; i < 100; i++)
        {
            last = (await rest.GetAsync($"/api/rpc/persistent/{rpcId}"))["status"]!.GetValue<string>();
            if (last == status)
            {
                return;
            }
            await Task.Delay(50);
        }
        Assert.Fail($"RPC {rpcId} is {last}, expected {status}");
    }

    [Fact]
    public async Task Downlink_LargerThanTheEdgesLimit_IsNeverSent_IsRecordedWithAHint_AndSyncStillCompletes()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (edgeId, routingKey, secret) = await CreateEdgeAsync(rest);
        var big = await rest.PostAsync("/api/device", new { name = "edge-big-" + Guid.NewGuid().ToString("N")[..6], additionalInfo = new { blob = new string('x', 4000) } });
        var (small, _) = await rest.CreateDeviceAsync("edge-small-" + Guid.NewGuid().ToString("N")[..6]);
        await rest.PostAsync($"/api/edge/{edgeId}/device/{big["id"]!["id"]}", new { });
        await rest.PostAsync($"/api/edge/{edgeId}/device/{small}", new { });

        await using var edge = new EdgeTestClient(EdgePort);
        Assert.Equal(ConnectResponseCode.Accepted, (await edge.ConnectAsync(routingKey, secret, maxInbound: 2000)).ResponseCode);
        var synced = await edge.UntilSyncCompletedAsync();
        Assert.All(synced, m => Assert.True(m.CalculateSize() < 2000));
        Assert.Contains(synced, m => m.DeviceUpdateMsg.Any(u => EdgeTestClient.Id(u.IdMSB, u.IdLSB).ToString() == small));

        // The failure is recorded with the commit after the pump moved on.
        JsonArray failures = [];
        for (var i = 0; i < 50 && failures.Count == 0; i++)
        {
            await Task.Delay(100);
            failures = (await rest.GetAsync($"/api/edge/{edgeId}"))["additionalInfo"]!["failedDownlinks"]!.AsArray();
        }
        Assert.Contains(failures, f => f!["error"]!.GetValue<string>().Contains("maxInboundMessageSize", StringComparison.Ordinal));
    }

    [Fact]
    public async Task RestEdgeEndpoints_CreateGetListAssignUnassignDelete()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (edgeId, _, _) = await CreateEdgeAsync(rest);
        var got = await rest.GetAsync($"/api/edge/{edgeId}");
        Assert.Equal("EDGE", got["id"]!["entityType"]!.GetValue<string>());
        var list = await rest.GetAsync("/api/tenant/edges?pageSize=1000&page=0");
        Assert.Contains(list["data"]!.AsArray(), e => e!["id"]!["id"]!.GetValue<string>() == edgeId);

        var (deviceId, _) = await rest.CreateDeviceAsync("edge-assign-" + Guid.NewGuid().ToString("N")[..6]);
        await rest.PostAsync($"/api/edge/{edgeId}/device/{deviceId}", new { });
        var assigned = await rest.GetAsync($"/api/edge/{edgeId}/devices?pageSize=10");
        Assert.Equal(deviceId, assigned["data"]![0]!["id"]!["id"]!.GetValue<string>());
        Assert.True((await rest.Http.DeleteAsync($"/api/edge/{edgeId}/device/{deviceId}")).IsSuccessStatusCode);
        Assert.Empty((await rest.GetAsync($"/api/edge/{edgeId}/devices?pageSize=10"))["data"]!.AsArray());

        // The reference's save with the edge's id updates it (name, label, additional info, secret); its name is unique
        // in the tenant, and a customer must be one of the tenant's.
        got["name"] = "renamed-" + Guid.NewGuid().ToString("N")[..6];
        got["label"] = "Shop floor";
        got["additionalInfo"] = new JsonObject { ["description"] = "line 2" };
        got["secret"] = "rotated-secret";
        var updated = await rest.PostAsync("/api/edge", got);
        Assert.Equal((edgeId, "Shop floor", "line 2", "rotated-secret"), (updated["id"]!["id"]!.GetValue<string>(), updated["label"]!.GetValue<string>(),
            updated["additionalInfo"]!["description"]!.GetValue<string>(), updated["secret"]!.GetValue<string>()));
        Assert.False(updated["additionalInfo"]!["connected"]!.GetValue<bool>());
        var sameName = await rest.Http.PostAsJsonAsync("/api/edge", new { name = got["name"]!.GetValue<string>(), routingKey = "rk-" + Guid.NewGuid().ToString("N") });
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, sameName.StatusCode);
        var noCustomer = await rest.Http.PostAsJsonAsync("/api/edge", new { name = "edge-" + Guid.NewGuid().ToString("N")[..6], customerId = new { id = Guid.NewGuid() } });
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, noCustomer.StatusCode);

        // What operators and the SDKs call besides: by name, infos, types, by ids, customer assignment.
        var edgeName = updated["name"]!.GetValue<string>();
        Assert.Equal(edgeId, (await rest.GetAsync($"/api/tenant/edges?edgeName={edgeName}"))["id"]!["id"]!.GetValue<string>());
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await rest.Http.GetAsync("/api/tenant/edges?edgeName=no-such-edge")).StatusCode);
        Assert.True((await rest.GetAsync("/api/edges/enabled")).GetValue<bool>());
        Assert.Contains((await rest.GetAsync("/api/edge/types")).AsArray(), t => t!["type"]!.GetValue<string>() == "default");
        Assert.Single((await rest.GetAsync($"/api/edges?edgeIds={edgeId},{Guid.NewGuid()}")).AsArray());
        var customer = await rest.PostAsync("/api/customer", new { title = "edge-owner-" + Guid.NewGuid().ToString("N")[..6] });
        var customerId = customer["id"]!["id"]!.GetValue<string>();
        await rest.PostAsync($"/api/customer/{customerId}/edge/{edgeId}", new { });
        var info = await rest.GetAsync($"/api/edge/info/{edgeId}");
        Assert.Equal(customer["title"]!.GetValue<string>(), info["customerTitle"]!.GetValue<string>());
        Assert.Single((await rest.GetAsync($"/api/customer/{customerId}/edges?pageSize=10&page=0"))["data"]!.AsArray());
        Assert.Contains((await rest.GetAsync($"/api/tenant/edgeInfos?pageSize=100&page=0&textSearch={edgeName}"))["data"]!.AsArray(),
            e => e!["customerTitle"]?.GetValue<string>() == customer["title"]!.GetValue<string>());
        Assert.True((await rest.Http.DeleteAsync($"/api/customer/edge/{edgeId}")).IsSuccessStatusCode);
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, (await rest.Http.DeleteAsync($"/api/customer/edge/{edgeId}")).StatusCode);

        Assert.True((await rest.Http.DeleteAsync($"/api/edge/{edgeId}")).IsSuccessStatusCode);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, (await rest.Http.GetAsync($"/api/edge/{edgeId}")).StatusCode);
    }
}

/// <summary>Edge behaviour that needs its own server process: retry spacing and a restart.</summary>
public sealed class EdgeProcessTests
{
    [Fact]
    public async Task GarbageOnTheEdgePort_IsAnsweredWithAnErrorStatus_AndLoggedWithoutAStackTrace()
    {
        // Anyone who reaches the port can send frames that are not protobuf: each must not write a stack trace to
        // the log (a flood would fill the disk), and the port goes on serving edges.
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-edge-" + Guid.NewGuid().ToString("N"));
        using var server = HostProcess.Start(HostFixture.FreePortSettings(dataDir));
        var ports = await server.WaitForDoorsAsync(5, TimeSpan.FromSeconds(30));
        using var h2 = new HttpClient { DefaultRequestVersion = System.Net.HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        for (var i = 0; i < 20; i++)
        {
            byte[] frame = [0, 0, 0, 0, 6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
            using var content = new ByteArrayContent(frame);
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/grpc");
            using var response = await h2.PostAsync($"http://127.0.0.1:{ports["edges"]}/edge.EdgeRpcService/handleMsgs", content);
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode); // gRPC answers its error in the trailers
        }

        await using (var edge = new EdgeTestClient(ports["edges"]))
        {
            Assert.Equal(ConnectResponseCode.BadCredentials, (await edge.ConnectAsync("no-such-edge", "x")).ResponseCode);
        }

        // One warning for the 20 streams (at most one per 10 s), no error and no exception in the log.
        var lines = server.Output.Split('\n');
        Assert.True(lines.Count(l => l.Contains("Perf.Edge[10]", StringComparison.Ordinal) && l.Contains("warn", StringComparison.Ordinal)) == 1, server.Output);
        Assert.DoesNotContain(lines, l => l.Contains("fail:", StringComparison.Ordinal) || l.Contains("Exception", StringComparison.Ordinal));
    }

    [Fact]
    public async Task UnacknowledgedDownlink_IsResent_AndTheQueueSurvivesARestart()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-edge-" + Guid.NewGuid().ToString("N"));
        var settings = HostFixture.FreePortSettings(dataDir);
        settings["EDGES_DOWNLINK_RETRY_MS"] = "400";
        settings["EDGES_DOWNLINK_ATTEMPTS"] = "100";
        settings["EDGES_UPLINK_RATE_LIMIT"] = "5";
        var server = HostProcess.Start(settings);
        try
        {
            var ports = await server.WaitForDoorsAsync(5, TimeSpan.FromSeconds(30));
            using var http = await LoginAsync(ports["http"]);
            var routingKey = "rk-" + Guid.NewGuid().ToString("N");
            var edgeId = (await PostAsync(http, "/api/edge", new { name = "restart-edge", routingKey, secret = "pw" }))["id"]!["id"]!.GetValue<string>();
            var d1 = (await PostAsync(http, "/api/device", new { name = "restart-d1" }))["id"]!["id"]!.GetValue<string>();
            await PostAsync(http, $"/api/edge/{edgeId}/device/{d1}", new { });

            await using (var edge = new EdgeTestClient(ports["edges"]) { AutoAck = false })
            {
                Assert.Equal(ConnectResponseCode.Accepted, (await edge.ConnectAsync(routingKey, "pw")).ResponseCode);
                var first = await edge.NextDownlinkAsync(_ => true);
                var again = await edge.NextDownlinkAsync(_ => true, TimeSpan.FromSeconds(5));
                Assert.Equal(first.DownlinkMsgId, again.DownlinkMsgId);
                // A failure the edge answers leaves the downlink pending, as the reference: it comes again.
                await edge.AckAsync(again.DownlinkMsgId, success: false);
                var afterFailure = await edge.NextDownlinkAsync(_ => true, TimeSpan.FromSeconds(5));
                Assert.Equal(first.DownlinkMsgId, afterFailure.DownlinkMsgId);
                // Acknowledge everything up to and including the sync's end.
                var current = afterFailure;
                while (true)
                {
                    await edge.AckAsync(current.DownlinkMsgId);
                    if (current.SyncCompletedMsg is not null)
                    {
                        break;
                    }
                    var acked = current.DownlinkMsgId;
                    try
                    {
                        current = await edge.NextDownlinkAsync(m => m.DownlinkMsgId > acked);
                    }
                    catch (OperationCanceledException)
                    {
                        Assert.Fail($"nothing after downlink {acked}:\n{server.Output}");
                    }
                }

                // Acknowledgements are recorded durably: wait until the server's queue is empty.
                for (var i = 0; i < 50; i++)
                {
                    var info = await http.GetFromJsonAsync<JsonObject>($"/api/edge/{edgeId}");
                    if (info!["additionalInfo"]!["pendingDownlinks"]!.GetValue<int>() == 0)
                    {
                        break;
                    }
                    await Task.Delay(100);
                }
            }

            // The edge is offline: a new assignment waits in its durable queue across a kill -9.
            var d2 = (await PostAsync(http, "/api/device", new { name = "restart-d2" }))["id"]!["id"]!.GetValue<string>();
            await PostAsync(http, $"/api/edge/{edgeId}/device/{d2}", new { });
            server.KillHard();
            server.Dispose();

            server = HostProcess.Start(settings);
            ports = await server.WaitForDoorsAsync(5, TimeSpan.FromSeconds(30));
            await using (var edge = new EdgeTestClient(ports["edges"]))
            {
                Assert.Equal(ConnectResponseCode.Accepted, (await edge.ConnectAsync(routingKey, "pw")).ResponseCode);
                var queued = await edge.NextDownlinkAsync(_ => true);
                Assert.Null(queued.SyncCompletedMsg);
                Assert.Equal(d2, EdgeTestClient.Id(queued.DeviceUpdateMsg[0].IdMSB, queued.DeviceUpdateMsg[0].IdLSB).ToString());
                Assert.Equal(UpdateMsgType.EntityCreatedRpcMessage, queued.DeviceUpdateMsg[0].MsgType);

                // Over the uplink rate limit (5/s here) an uplink is answered success=false with its id.
                var responses = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => edge.UplinkAsync(new UplinkMsg())));
                Assert.Contains(responses, r => !r.Success && r.ErrorMsg == "Rate limit reached"); // the text the edge backs off on
                Assert.Contains(responses, r => r.Success);
            }
        }
        finally
        {
            server.Dispose();
            TestDirectories.Delete(dataDir);
        }
    }

    private static async Task<HttpClient> LoginAsync(int port)
    {
        var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
        var login = await http.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = "tenant" });
        login.EnsureSuccessStatusCode();
        var token = (await login.Content.ReadFromJsonAsync<JsonObject>())!["token"]!.GetValue<string>();
        http.DefaultRequestHeaders.Add("X-Authorization", "Bearer " + token);
        return http;
    }

    private static async Task<JsonObject> PostAsync(HttpClient http, string path, object body)
    {
        var response = await http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"POST {path} answered {(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text) as JsonObject ?? [];
    }
}
