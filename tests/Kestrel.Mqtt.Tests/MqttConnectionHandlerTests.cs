using System.Buffers;
using Perf.Core;
using Perf.Core.Telemetry;
using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Kestrel.Mqtt.Tests;

public class MqttConnectionHandlerTests
{
    private static async Task<MqttTestHost> ConnectedAsync(string token = "good", Action<MqttOptions>? configure = null)
    {
        var host = new MqttTestHost(configure);
        await host.ConnectAsync(token);
        var connAck = await host.ReceiveAsync();
        Assert.Equal(MqttPacketType.ConnAck, connAck.Type);
        Assert.Equal(0, connAck.ReturnCode);
        return host;
    }

    [Fact]
    public async Task Connect_WithKnownToken_ReturnsConnAck0_AndRegistersSession()
    {
        await using var host = await ConnectedAsync();
        var session = Assert.Single(host.Sessions.Sessions);
        Assert.Equal("MQTT", session.Transport);
        Assert.Equal(FakeDeviceApi.Sensor.Id, session.DeviceId);
    }

    [Theory]
    [InlineData(null, 0x04)]
    [InlineData("", 0x04)]
    [InlineData("nope", 0x05)]
    public async Task Connect_WithMissingOrUnknownToken_RefusesAndCloses(string? token, byte code)
    {
        await using var host = new MqttTestHost();
        await host.ConnectAsync(token);
        var connAck = await host.ReceiveAsync();
        Assert.Equal(code, connAck.ReturnCode);
        Assert.True(await host.ClosedWithinAsync(2000));
        Assert.Empty(host.Sessions.Sessions);
    }

    [Fact]
    public async Task Connect_WithProtocolLevel5_ReturnsConnAck1AndCloses()
    {
        await using var host = new MqttTestHost();
        await host.SendAsync(w => w.Write(new byte[] { 0x10, 0x0C, 0, 4, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 5, 0x02, 0, 60, 0, 0 }));
        Assert.Equal(0x01, (await host.ReceiveAsync()).ReturnCode);
        Assert.True(await host.ClosedWithinAsync(2000));
    }

    [Fact]
    public async Task NoConnect_WithinConnectTimeout_Closes()
    {
        await using var host = new MqttTestHost(o => o.ConnectTimeout = TimeSpan.FromMilliseconds(200));
        Assert.True(await host.ClosedWithinAsync(3000));
    }

    [Fact]
    public async Task FirstPacketNotConnect_Closes()
    {
        await using var host = new MqttTestHost();
        await host.SendAsync(MqttPacketWriter.WritePingReq);
        Assert.True(await host.ClosedWithinAsync(2000));
    }

    [Fact]
    public async Task SecondConnect_Closes()
    {
        await using var host = await ConnectedAsync();
        await host.ConnectAsync();
        Assert.True(await host.ClosedWithinAsync(2000));
        Assert.Empty(host.Sessions.Sessions);
    }

    [Fact]
    public async Task PingReq_GetsPingResp()
    {
        await using var host = await ConnectedAsync();
        await host.SendAsync(MqttPacketWriter.WritePingReq);
        Assert.Equal(MqttPacketType.PingResp, (await host.ReceiveAsync()).Type);
    }

    [Fact]
    public async Task KeepAlive_ClosesAfterOneAndAHalfIntervalsOfSilence()
    {
        await using var host = new MqttTestHost();
        await host.ConnectAsync(keepAlive: 1);
        await host.ReceiveAsync();
        Assert.False(await host.ClosedWithinAsync(1000));
        Assert.True(await host.ClosedWithinAsync(3000));
    }

    [Fact]
    public async Task SharedTicker_ExpiresOnlyTheSilentConnection_AndStopsWhenTheLastCloses()
    {
        await using var silent = new MqttTestHost();
        await using var chatty = new MqttTestHost(silent);
        await silent.ConnectAsync(keepAlive: 1);
        Assert.Equal(MqttPacketType.ConnAck, (await silent.ReceiveAsync()).Type);
        await chatty.ConnectAsync("gw", keepAlive: 1); // another device: a second session of one device replaces the first
        Assert.Equal(MqttPacketType.ConnAck, (await chatty.ReceiveAsync()).Type);
        Assert.Equal(2, silent.Handler.Ticker.Count);

        // One timer serves both: the silent one goes after 1.5 s, the one that pings every 300 ms stays.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!silent.Running.IsCompleted && DateTime.UtcNow < deadline)
        {
            await chatty.SendAsync(MqttPacketWriter.WritePingReq);
            Assert.Equal(MqttPacketType.PingResp, (await chatty.ReceiveAsync()).Type);
            await Task.Delay(300);
        }

        Assert.True(silent.Running.IsCompleted);
        Assert.False(chatty.Running.IsCompleted);
        Assert.Equal(1, silent.Handler.Ticker.Count);

        await chatty.SendAsync(MqttPacketWriter.WriteDisconnect);
        Assert.True(await chatty.ClosedWithinAsync(5000));
        Assert.Equal(0, silent.Handler.Ticker.Count);
    }

    [Fact]
    public async Task Disconnect_Closes()
    {
        await using var host = await ConnectedAsync();
        await host.SendAsync(MqttPacketWriter.WriteDisconnect);
        Assert.True(await host.ClosedWithinAsync(2000));
    }

    [Theory]
    [InlineData("v1/devices/me/telemetry", "telemetry")]
    [InlineData("v2/t", "telemetry")]
    [InlineData("v2/t/j", "telemetry")]
    [InlineData("v1/devices/me/attributes", "attributes")]
    [InlineData("v2/a", "attributes")]
    [InlineData("v1/devices/me/rpc/response/17", "rpc-reply:17")]
    [InlineData("v2/r/res/17", "rpc-reply:17")]
    [InlineData("v1/devices/me/claim", "claim")]
    public async Task Publish_IsRoutedToTheCore_AndPubAcked(string topic, string call)
    {
        await using var host = await ConnectedAsync();
        await host.PublishAsync(topic, "{\"t\":1}", qos: 1, id: 5);
        var ack = await host.ReceiveAsync();
        Assert.Equal(MqttPacketType.PubAck, ack.Type);
        Assert.Equal(5, ack.PacketId);
        Assert.Equal((call, "sensor-1", "{\"t\":1}"), Assert.Single(host.Api.Calls));
    }

    [Fact]
    public async Task PubAck_IsSentOnlyAfterTheUplinkCompletes_AndInOrder()
    {
        await using var host = await ConnectedAsync();
        host.Api.Hold = new TaskCompletionSource<UplinkResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        await host.PublishAsync("v1/devices/me/telemetry", "{\"a\":1}", 1, 1);
        await host.PublishAsync("v1/devices/me/telemetry", "{\"a\":2}", 1, 2);
        var early = host.ReceiveAsync(300);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => early);
        host.Api.Hold.SetResult(UplinkResult.Success);
        Assert.Equal(1, (await host.ReceiveAsync()).PacketId);
        Assert.Equal(2, (await host.ReceiveAsync()).PacketId);
    }

    private static TaskCompletionSource<UplinkResult> Held(MqttTestHost host)
    {
        var held = new TaskCompletionSource<UplinkResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (host.Api.Calls)
        {
            host.Api.HoldEach.Enqueue(held);
        }

        return held;
    }

    [Fact]
    public async Task Reader_KeepsReading_WhileEarlierUplinksCommit_AndPubAcksKeepArrivalOrder()
    {
        await using var host = await ConnectedAsync();
        var first = Held(host);
        var second = Held(host);
        await host.PublishAsync("v1/devices/me/telemetry", "{\"a\":1}", 1, 1);
        await host.Api.WaitForCallsAsync(1);

        // The first uplink is still committing: the connection answers a ping and takes the next uplink.
        await host.SendAsync(w => w.Write(MqttPacketWriter.PingReq));
        Assert.Equal(MqttPacketType.PingResp, (await host.ReceiveAsync()).Type);
        await host.PublishAsync("v1/devices/me/telemetry", "{\"a\":2}", 1, 2);
        await host.Api.WaitForCallsAsync(2);

        // The second completes first: its PUBACK waits for the first's.
        second.SetResult(UplinkResult.Success);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => host.ReceiveAsync(300));
        first.SetResult(UplinkResult.Success);
        var ack = await host.ReceiveAsync();
        Assert.Equal((MqttPacketType.PubAck, 1), (ack.Type, (int)ack.PacketId));
        Assert.Equal(2, (await host.ReceiveAsync()).PacketId);
    }

    [Fact]
    public async Task FullInflightWindow_StopsReading_UntilItsOldestUplinkIsAcked()
    {
        await using var host = await ConnectedAsync(configure: o => o.MaxInflight = 2);
        var first = Held(host);
        var second = Held(host);
        for (ushort id = 1; id <= 3; id++)
        {
            await host.PublishAsync("v1/devices/me/telemetry", $"{{\"a\":{id}}}", 1, id);
        }

        await host.SendAsync(w => w.Write(MqttPacketWriter.PingReq));
        await host.Api.WaitForCallsAsync(2);

        // Two in flight: the third publish and the ping wait unread.
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => host.ReceiveAsync(300));
        lock (host.Api.Calls)
        {
            Assert.Equal(2, host.Api.Calls.Count);
        }

        first.SetResult(UplinkResult.Success);
        Assert.Equal(1, (await host.ReceiveAsync()).PacketId);
        await host.Api.WaitForCallsAsync(3);
        second.SetResult(UplinkResult.Success);
        var rest = new[] { await host.ReceiveAsync(), await host.ReceiveAsync(), await host.ReceiveAsync() };
        Assert.Equal([2, 3], rest.Where(p => p.Type == MqttPacketType.PubAck).Select(p => (int)p.PacketId));
        Assert.Single(rest, p => p.Type == MqttPacketType.PingResp);
    }

    [Fact]
    public async Task PeerThatFinishedSending_GetsItsPubAcks_BeforeTheClose()
    {
        await using var host = await ConnectedAsync();
        var first = Held(host);
        var second = Held(host);
        await host.PublishAsync("v1/devices/me/telemetry", "{\"a\":1}", 1, 1);
        await host.PublishAsync("v1/devices/me/telemetry", "{\"a\":2}", 1, 2);
        await host.FinishSendingAsync();
        await host.Api.WaitForCallsAsync(2);
        Assert.False(await host.ClosedWithinAsync(300));

        first.SetResult(UplinkResult.Success);
        second.SetResult(UplinkResult.Success);
        Assert.Equal(1, (await host.ReceiveAsync()).PacketId);
        Assert.Equal(2, (await host.ReceiveAsync()).PacketId);
        Assert.True(await host.ClosedWithinAsync(5000));
    }

    [Fact]
    public async Task BadPayload_OnQoS1_ClosesWithoutPubAck()
    {
        await using var host = await ConnectedAsync();
        host.Api.NextStatus = UplinkStatus.BadPayload;
        await host.PublishAsync("v1/devices/me/telemetry", "{", 1, 3);
        Assert.True(await host.ClosedWithinAsync(2000));
    }

    [Fact]
    public async Task BadPayload_OnQoS1_IsAcked_WhenConfigured()
    {
        await using var host = await ConnectedAsync(configure: o => o.AckInvalidJsonOnQos1 = true);
        host.Api.NextStatus = UplinkStatus.BadPayload;
        await host.PublishAsync("v1/devices/me/telemetry", "{", 1, 3);
        Assert.Equal(MqttPacketType.PubAck, (await host.ReceiveAsync()).Type);
    }

    [Fact]
    public async Task RpcReplyForNoPendingRequest_IsAcked_AndTheSessionStays()
    {
        await using var host = await ConnectedAsync();
        host.Api.NextStatus = UplinkStatus.NotFound;
        await host.PublishAsync("v1/devices/me/rpc/response/999", "{}", 1, 5);
        Assert.Equal(5, (await host.ReceiveAsync()).PacketId);
        Assert.False(await host.ClosedWithinAsync(300));
    }

    [Fact]
    public async Task UnknownTopic_IsAckedAndIgnored()
    {
        await using var host = await ConnectedAsync();
        await host.PublishAsync("some/other/topic", "x", 1, 9);
        Assert.Equal(9, (await host.ReceiveAsync()).PacketId);
        Assert.Empty(host.Api.Calls);
    }

    [Fact]
    public async Task PayloadAboveLimit_Closes()
    {
        await using var host = await ConnectedAsync(configure: o => o.MaxPayloadSize = 16);
        await host.PublishAsync("v1/devices/me/telemetry", new string('x', 100), 1, 1);
        Assert.True(await host.ClosedWithinAsync(2000));
    }

    [Fact]
    public async Task Subscribe_GrantsMinQoS1_And0x80ForUnsupportedFilters()
    {
        await using var host = await ConnectedAsync();
        await host.SendAsync(w => MqttPacketWriter.WriteSubscribe(w, 4, [new("v1/devices/me/attributes", 2), new("foo/#", 1), new("v1/devices/me/rpc/request/+", 0)]));
        var subAck = await host.ReceiveAsync();
        Assert.Equal(MqttPacketType.SubAck, subAck.Type);
        Assert.Equal(4, subAck.PacketId);
        Assert.Equal(new byte[] { 0x01, 0x80, 0x00 }, subAck.Bytes);
        var session = host.Sessions.Sessions[0];
        Assert.True(session.WantsAttributeUpdates);
        Assert.True(session.WantsRpc);

        await host.SendAsync(w => MqttPacketWriter.WriteUnsubscribe(w, 5, [new("v1/devices/me/attributes", 0)]));
        Assert.Equal(MqttPacketType.UnsubAck, (await host.ReceiveAsync()).Type);
        Assert.False(session.WantsAttributeUpdates);
    }

    [Theory]
    [InlineData("v1/devices/me/attributes/request/3", "v1/devices/me/attributes/response/3")]
    [InlineData("v2/a/req/3", "v2/a/res/3")]
    public async Task AttributeRequest_IsAnsweredOnResponseTopic(string request, string response)
    {
        await using var host = await ConnectedAsync();
        await host.PublishAsync(request, "{\"clientKeys\":\"a,b\",\"sharedKeys\":\"s\"}");
        var reply = await host.ReceiveAsync();
        Assert.Equal(response, reply.Topic);
        Assert.Equal("{\"client\":{\"a\":1},\"shared\":{\"s\":\"x\"}}", reply.Payload);
        Assert.Equal(("attr-request", "sensor-1", "a,b|s"), Assert.Single(host.Api.Calls));
    }

    [Theory]
    [InlineData("v1/devices/me/rpc/request/+", "v1/devices/me/rpc/request/7")]
    [InlineData("v2/r/req/+", "v2/r/req/7")]
    public async Task ServerRpc_IsPushed_AndReplyReachesTheCore(string filter, string topic)
    {
        await using var host = await ConnectedAsync();
        await host.SendAsync(w => MqttPacketWriter.WriteSubscribe(w, 1, [new(filter, 0)]));
        await host.ReceiveAsync();
        var session = host.Sessions.Sessions[0];
        Assert.True(session.PushRpcRequest(new RpcRequest(7, Guid.NewGuid(), "setGpio", "{\"pin\":1}", false, 0, false)));
        var push = await host.ReceiveAsync();
        Assert.Equal(topic, push.Topic);
        Assert.Equal("{\"method\":\"setGpio\",\"params\":{\"pin\":1}}", push.Payload);

        await host.PublishAsync("v1/devices/me/rpc/response/7", "{\"ok\":true}", 1, 2);
        Assert.Equal(MqttPacketType.PubAck, (await host.ReceiveAsync()).Type);
        Assert.Equal(("rpc-reply:7", "sensor-1", "{\"ok\":true}"), Assert.Single(host.Api.Calls));
    }

    [Fact]
    public async Task QoS1Rpc_IsResentWithDup_UntilPubAcked()
    {
        await using var host = await ConnectedAsync(configure: o => o.DownlinkRetryInterval = TimeSpan.FromMilliseconds(200));
        await host.SendAsync(w => MqttPacketWriter.WriteSubscribe(w, 1, [new("v1/devices/me/rpc/request/+", 1)]));
        await host.ReceiveAsync();
        host.Sessions.Sessions[0].PushRpcRequest(new RpcRequest(8, Guid.NewGuid(), "m", "{}", false, 0, false));
        var first = await host.ReceiveAsync();
        Assert.Equal(1, first.QoS);
        Assert.False(first.Dup);
        var again = await host.ReceiveAsync();
        Assert.True(again.Dup);
        Assert.Equal(first.PacketId, again.PacketId);
    }

    [Fact]
    public async Task QoS1Downlinks_BeyondMaxPending_CloseTheSession_AndAPubAckFreesASlot()
    {
        await using var host = await ConnectedAsync(configure: o => o.MaxPendingPerSession = 2);
        await host.SendAsync(w => MqttPacketWriter.WriteSubscribe(w, 1, [new("v1/devices/me/attributes", 1)]));
        await host.ReceiveAsync();
        var session = host.Sessions.Sessions[0];
        session.PushAttributeUpdate([new KvEntry("a", 1L)], []);
        var first = await host.ReceiveAsync();
        await host.SendAsync(w => MqttPacketWriter.WritePubAck(w, first.PacketId));
        await Task.Delay(100); // the read loop takes the PUBACK
        session.PushAttributeUpdate([new KvEntry("a", 2L)], []);
        await host.ReceiveAsync();
        session.PushAttributeUpdate([new KvEntry("a", 3L)], []);
        await host.ReceiveAsync();
        Assert.False(await host.ClosedWithinAsync(200));

        session.PushAttributeUpdate([new KvEntry("a", 4L)], []);

        Assert.True(await host.ClosedWithinAsync(2000));
    }

    [Fact]
    public async Task SharedAttributeUpdate_IsPushedToSubscribers()
    {
        await using var host = await ConnectedAsync();
        await host.SendAsync(w => MqttPacketWriter.WriteSubscribe(w, 1, [new("v1/devices/me/attributes", 0)]));
        await host.ReceiveAsync();
        host.Sessions.Sessions[0].PushAttributeUpdate([new KvEntry("fw_version", "1.2")], ["old"]);
        var push = await host.ReceiveAsync();
        Assert.Equal("v1/devices/me/attributes", push.Topic);
        Assert.Equal("{\"fw_version\":\"1.2\",\"deleted\":[\"old\"]}", push.Payload);
    }

    [Theory]
    [InlineData("v1/devices/me/rpc/request/12", "v1/devices/me/rpc/response/12")]
    [InlineData("v2/r/req/12", "v2/r/res/12")]
    public async Task ClientRpc_IsAnsweredOnRpcResponseTopic(string request, string response)
    {
        await using var host = await ConnectedAsync();
        await host.PublishAsync(request, "{\"method\":\"getCurrentTime\",\"params\":{}}");
        var reply = await host.ReceiveAsync();
        Assert.Equal(response, reply.Topic);
        Assert.Equal("{\"time\":42}", reply.Payload);
    }

    [Theory]
    [InlineData("v1/devices/me/attributes/request/abc")]
    [InlineData("v1/devices/me/attributes/request/")]
    [InlineData("v1/devices/me/rpc/request/1.5")]
    [InlineData("v1/devices/me/rpc/response/99999999999")]
    [InlineData("v2/a/req/x")]
    [InlineData("v2/r/res/")]
    public async Task RequestIdThatIsNotANumber_OnQoS1_ClosesWithoutPubAck_AndReachesNothing(string topic)
    {
        // The reference's Integer.parseInt of the id fails the publish, and an MQTT 3.1.1 session is closed.
        await using var host = await ConnectedAsync();
        await host.PublishAsync(topic, "{}", 1, 4);
        Assert.True(await host.ClosedWithinAsync(2000));
        Assert.Empty(host.Api.Calls);
    }

    [Fact]
    public async Task RequestIdThatIsNotANumber_OnQoS0_IsDropped_AndTheSessionStays()
    {
        await using var host = await ConnectedAsync();
        await host.PublishAsync("v1/devices/me/attributes/request/abc", "{}");
        await host.PublishAsync("v1/devices/me/rpc/request/3", "{\"method\":\"getCurrentTime\",\"params\":{}}");
        Assert.Equal("v1/devices/me/rpc/response/3", (await host.ReceiveAsync()).Topic);
        Assert.Equal("client-rpc", Assert.Single(host.Api.Calls).Call);
    }

    [Fact]
    public async Task FirmwareChunkRequest_IsAnsweredOnResponseTopic()
    {
        await using var host = await ConnectedAsync();
        await host.PublishAsync("v2/fw/request/3/chunk/0", "4");
        var reply = await host.ReceiveAsync();
        Assert.Equal("v2/fw/response/3/chunk/0", reply.Topic);
        Assert.Equal(4, reply.Bytes.Length);
    }

    [Fact]
    public async Task GatewayTelemetry_IsSplitPerDevice()
    {
        await using var host = await ConnectedAsync("gw");
        await host.PublishAsync("v1/gateway/telemetry", "{\"A\":[{\"ts\":1,\"values\":{\"t\":1}}],\"B\":[{\"ts\":2,\"values\":{\"t\":2}}]}", 1, 6);
        Assert.Equal(6, (await host.ReceiveAsync()).PacketId);
        Assert.Equal(
            [("telemetry", "A", "[{\"ts\":1,\"values\":{\"t\":1}}]"), ("telemetry", "B", "[{\"ts\":2,\"values\":{\"t\":2}}]")],
            host.Api.Calls);
        Assert.Equal(3, host.Sessions.Sessions.Count);
    }
}

public class MqttRateLimitTests
{
    [Fact]
    public async Task DeviceRateLimitExceeded_AcksTheAcceptedUplinks_ThenClosesWithoutPubAck()
    {
        await using var host = new MqttTestHost(o => o.DeviceMessagesRateLimit = "3:60");
        await host.ConnectAsync("good");
        Assert.Equal(0, (await host.ReceiveAsync()).ReturnCode);

        for (ushort id = 1; id <= 4; id++)
        {
            await host.PublishAsync("v1/devices/me/telemetry", "{\"a\":1}", 1, id);
        }

        for (ushort id = 1; id <= 3; id++)
        {
            var ack = await host.ReceiveAsync();
            Assert.Equal(MqttPacketType.PubAck, ack.Type);
            Assert.Equal(id, ack.PacketId);
        }

        Assert.True(await host.ClosedWithinAsync(2000));
        Assert.Equal(3, host.Api.Calls.Count);
    }

    [Fact]
    public async Task DeviceRateLimitExceeded_OnQoS0_Closes()
    {
        await using var first = new MqttTestHost(o => o.DeviceMessagesRateLimit = "1:60");
        await first.ConnectAsync("good");
        Assert.Equal(0, (await first.ReceiveAsync()).ReturnCode);
        await first.PublishAsync("v1/devices/me/telemetry", "{\"a\":1}", 0);
        await first.PublishAsync("v1/devices/me/telemetry", "{\"a\":2}", 0);

        // QoS 0 excess closes too: there is no PUBACK to withhold.
        Assert.True(await first.ClosedWithinAsync(2000));
    }

    [Fact]
    public void InvalidRateLimit_FailsAtStartup()
    {
        Assert.Throws<FormatException>(() => new MqttTestHost(o => o.TenantMessagesRateLimit = "20:1,600"));
    }
}
