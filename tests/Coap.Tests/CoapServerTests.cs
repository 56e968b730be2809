using System.Net;
using System.Net.Sockets;
using System.Text;
using Perf.Coap.Internal;
using Perf.Core;

namespace Perf.Coap.Tests;

public sealed class CoapServerTests
{
    private static readonly byte[] Token = [0xCA, 0xFE];

    [Fact]
    public async Task ConfirmableTelemetryPost_IsAnsweredWithAPiggybacked201_CarryingTheToken()
    {
        await using var h = await CoapServerHarness.StartAsync();
        var id = h.NextId();
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, id, Token, "api/v1/good/telemetry",
            w => w.UInt(CoapOptionNumber.ContentFormat, CoapContentFormat.Json), "{\"t\":1}"u8.ToArray()));
        var reply = await h.ReceiveAsync();
        Assert.Equal(CoapMessageType.Acknowledgement, reply.Type);
        Assert.Equal(CoapCode.Created, reply.Code);
        Assert.Equal(id, reply.MessageId);
        Assert.Equal(Token, reply.Token);
        Assert.Equal([("telemetry", "{\"t\":1}")], h.Api.Calls);
    }

    [Fact]
    public async Task ATakenPort_FailsTheStart_WithTheAddressNamedAsKestrelNamesItsOwn()
    {
        using var taken = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        int port = ((IPEndPoint)taken.Client.LocalEndPoint!).Port;
        var e = await Assert.ThrowsAsync<IOException>(() => CoapServerHarness.StartAsync(o => o.Port = port));
        Assert.Equal($"Failed to bind to address udp://127.0.0.1:{port}: Address already in use.", e.Message);
        Assert.IsType<SocketException>(e.InnerException);
    }

    [Fact]
    public async Task OnTheIPv6Wildcard_BothIPv4AndIPv6DevicesAreAnswered()
    {
        await using var h = await CoapServerHarness.StartAsync(o => o.BindAddress = IPAddress.IPv6Any);
        int port = h.Server.LocalEndPoint!.Port;
        foreach (var (family, loopback) in new[] { (AddressFamily.InterNetwork, IPAddress.Loopback), (AddressFamily.InterNetworkV6, IPAddress.IPv6Loopback) })
        {
            using var client = new UdpClient(family);
            client.Connect(loopback, port);
            var id = h.NextId();
            await client.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, id, Token, "api/v1/good/telemetry", payload: "{\"t\":1}"u8.ToArray()));
            using var cts = new CancellationTokenSource(5000);
            var reply = CoapTestMessage.Parse((await client.ReceiveAsync(cts.Token)).Buffer);
            Assert.Equal(CoapCode.Created, reply.Code);
            Assert.Equal(id, reply.MessageId);
        }

        Assert.Equal(2, h.Api.Calls.Count);
    }

    [Theory]
    [InlineData("api/v1/bad/telemetry", CoapCode.Post, CoapCode.Unauthorized)]
    [InlineData("api/v1/good/telemetry", CoapCode.Get, CoapCode.BadRequest)]
    [InlineData("api/v1/good/nothing", CoapCode.Post, CoapCode.NotFound)]
    [InlineData("other", CoapCode.Get, CoapCode.NotFound)]
    [InlineData("api/v1/good/telemetry", CoapCode.Delete, CoapCode.MethodNotAllowed)]
    public async Task Requests_AreAnsweredWithTheInteropCodes(string path, byte method, byte expected)
    {
        await using var h = await CoapServerHarness.StartAsync();
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, method, h.NextId(), Token, path, payload: "{}"u8.ToArray()));
        Assert.Equal(CoapCode.Format(expected), CoapCode.Format((await h.ReceiveAsync()).Code));
    }

    [Theory]
    [InlineData(UplinkStatus.BadPayload, CoapCode.BadRequest)]
    [InlineData(UplinkStatus.Unavailable, CoapCode.InternalServerError)]
    [InlineData(UplinkStatus.TooLarge, CoapCode.RequestEntityTooLarge)]
    public async Task CoreOutcomes_MapToCoapCodes(UplinkStatus status, byte expected)
    {
        await using var h = await CoapServerHarness.StartAsync();
        h.Api.NextStatus = status;
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, h.NextId(), Token, "api/v1/good/attributes", payload: "x"u8.ToArray()));
        Assert.Equal(CoapCode.Format(expected), CoapCode.Format((await h.ReceiveAsync()).Code));
    }

    [Fact]
    public async Task UnknownCriticalOption_Is402_AndUnsupportedContentFormat_Is415()
    {
        await using var h = await CoapServerHarness.StartAsync();
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, h.NextId(), Token, "api/v1/good/telemetry", w => w.Option(9, "x"u8)));
        Assert.Equal(CoapCode.BadOption, (await h.ReceiveAsync()).Code);
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, h.NextId(), Token, "api/v1/good/telemetry",
            w => w.UInt(CoapOptionNumber.ContentFormat, 60)));
        Assert.Equal(CoapCode.UnsupportedContentFormat, (await h.ReceiveAsync()).Code);
    }

    [Fact]
    public async Task ABlockSizeOf2048_ReservedSzx7_Is400()
    {
        await using var h = await CoapServerHarness.StartAsync();
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Get, h.NextId(), Token, "api/v1/good/attributes",
            w => w.UInt(CoapOptionNumber.Block2, 7)));
        Assert.Equal(CoapCode.BadRequest, (await h.ReceiveAsync()).Code);
    }

    [Fact]
    public async Task NonConfirmableRequest_GetsANonConfirmableResponse()
    {
        await using var h = await CoapServerHarness.StartAsync();
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.NonConfirmable, CoapCode.Post, h.NextId(), Token, "api/v1/good/telemetry", payload: "{}"u8.ToArray()));
        var reply = await h.ReceiveAsync();
        Assert.Equal(CoapMessageType.NonConfirmable, reply.Type);
        Assert.Equal(CoapCode.Created, reply.Code);
        Assert.Equal(Token, reply.Token);
    }

    [Fact]
    public async Task DuplicateConfirmable_GetsTheSameResponse_AndReachesTheCoreOnce()
    {
        await using var h = await CoapServerHarness.StartAsync();
        var request = CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, h.NextId(), Token, "api/v1/good/telemetry", payload: "{\"a\":1}"u8.ToArray());
        await h.SendAsync(request);
        var first = await h.ReceiveAsync();
        await h.SendAsync(request);
        var second = await h.ReceiveAsync();
        Assert.Equal(first.MessageId, second.MessageId);
        Assert.Equal(first.Code, second.Code);
        Assert.Equal(1, h.Api.CallCount("telemetry"));
    }

    [Fact]
    public async Task SlowCore_GetsAnEmptyAckAfter500ms_ThenASeparateConfirmableResponse()
    {
        await using var h = await CoapServerHarness.StartAsync();
        h.Api.Hold = new TaskCompletionSource<UplinkResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var id = h.NextId();
        var started = System.Diagnostics.Stopwatch.StartNew();
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, id, Token, "api/v1/good/telemetry", payload: "{}"u8.ToArray()));

        var emptyAck = await h.ReceiveAsync();
        Assert.InRange(started.ElapsedMilliseconds, 450, 10_000); // not before the 500 ms rule; the upper bound only catches a lost timer
        Assert.Equal(CoapMessageType.Acknowledgement, emptyAck.Type);
        Assert.Equal(CoapCode.Empty, emptyAck.Code);
        Assert.Equal(id, emptyAck.MessageId);

        h.Api.Hold.SetResult(UplinkResult.Success);
        var separate = await h.ReceiveAsync();
        Assert.Equal(CoapMessageType.Confirmable, separate.Type);
        Assert.Equal(CoapCode.Created, separate.Code);
        Assert.Equal(Token, separate.Token);
        Assert.NotEqual(id, separate.MessageId);

        // Acknowledge it: no retransmission follows.
        await h.SendAsync([0x60, 0x00, (byte)(separate.MessageId >> 8), (byte)separate.MessageId]);
        Assert.True(await h.NothingWithinAsync(3500));
    }

    [Fact]
    public async Task ObserveRpc_DeliversANotification_RetransmitsItWithBackoff_AndDropsTheObserverWhenNeverAcknowledged()
    {
        await using var h = await CoapServerHarness.StartAsync(o => o.AckTimeoutScale = 0.05); // ACK_TIMEOUT 100 ms
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Get, h.NextId(), Token, "api/v1/good/rpc",
            w => w.UInt(CoapOptionNumber.Observe, 0)));
        var registered = await h.ReceiveAsync();
        Assert.Equal(CoapCode.Content, registered.Code);
        Assert.NotNull(registered.UInt(CoapOptionNumber.Observe));

        var session = Assert.Single(h.Sessions.Sessions);
        Assert.True(session.WantsRpc);
        Assert.Equal("COAP", session.Transport);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.True(session.PushRpcRequest(new RpcRequest(7, Guid.NewGuid(), "reboot", "{\"now\":true}", false, 0, false)));

        var times = new List<long>();
        var notification = await h.ReceiveAsync();
        times.Add(clock.ElapsedMilliseconds);
        Assert.Equal(CoapMessageType.Confirmable, notification.Type);
        Assert.Equal(Token, notification.Token);
        Assert.True(notification.UInt(CoapOptionNumber.Observe) > registered.UInt(CoapOptionNumber.Observe));
        Assert.Equal("{\"id\":7,\"method\":\"reboot\",\"params\":{\"now\":true}}", notification.Text);

        for (var i = 0; i < CoapTransmission.MaxRetransmit; i++)
        {
            var again = await h.ReceiveAsync();
            times.Add(clock.ElapsedMilliseconds);
            Assert.Equal(notification.MessageId, again.MessageId);
        }

        Assert.True(await h.NothingWithinAsync(2500));
        // Back-off doubles: the k-th retransmission is sent at least 100 + 200 + ... + (100 << (k - 1)) ms after the
        // notification, itself sent after the push. Timed from the push, at the client: a busy machine can only make
        // an arrival later, never earlier (gaps between arrivals are not a measure: a stalled test thread once read
        // two datagrams in the same millisecond).
        long due = 0;
        for (var i = 1; i < times.Count; i++)
        {
            due += 100 << (i - 1);
            Assert.True(times[i] >= due - 50, $"retransmission {i} at {times[i]} ms, due after {due} ms: {string.Join(",", times)}");
        }

        Assert.Empty(h.Sessions.Sessions); // gave up: observer removed, session unregistered
    }

    [Fact]
    public async Task ResetToANotification_CancelsTheObservation()
    {
        await using var h = await CoapServerHarness.StartAsync();
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Get, h.NextId(), Token, "api/v1/good/attributes",
            w => w.UInt(CoapOptionNumber.Observe, 0)));
        var registered = await h.ReceiveAsync();
        Assert.Equal("{\"s\":\"x\"}", registered.Text);
        var session = Assert.Single(h.Sessions.Sessions);
        session.PushAttributeUpdate([new Perf.Core.Telemetry.KvEntry("fw", "2.0")], []);
        var notification = await h.ReceiveAsync();
        Assert.Equal("{\"fw\":\"2.0\"}", notification.Text);
        await h.SendAsync([0x70, 0x00, (byte)(notification.MessageId >> 8), (byte)notification.MessageId]);
        await WaitUntil(() => h.Sessions.Sessions.Count == 0);
    }

    [Fact]
    public async Task ObserveOne_Deregisters()
    {
        await using var h = await CoapServerHarness.StartAsync();
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Get, h.NextId(), Token, "api/v1/good/rpc",
            w => w.UInt(CoapOptionNumber.Observe, 0)));
        await h.ReceiveAsync();
        Assert.Single(h.Sessions.Sessions);
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Get, h.NextId(), Token, "api/v1/good/rpc",
            w => w.UInt(CoapOptionNumber.Observe, 1)));
        Assert.Equal(CoapCode.Content, (await h.ReceiveAsync()).Code);
        Assert.Empty(h.Sessions.Sessions);
    }

    [Fact]
    public async Task Block1Upload_IsAssembled_AndEachBlockAcknowledged()
    {
        await using var h = await CoapServerHarness.StartAsync();
        var body = Encoding.UTF8.GetBytes("{\"k\":\"" + new string('x', 40) + "\"}"); // 48 bytes: three blocks of 16
        for (var n = 0; n < 3; n++)
        {
            var block = new CoapBlock(n, n < 2, 0);
            await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, h.NextId(), Token, "api/v1/good/telemetry",
                w => w.UInt(CoapOptionNumber.Block1, block.Encode()), body.AsSpan(n * 16, 16).ToArray()));
            var reply = await h.ReceiveAsync();
            Assert.Equal(n < 2 ? CoapCode.Continue : CoapCode.Created, reply.Code);
            Assert.Equal(block.Encode(), reply.UInt(CoapOptionNumber.Block1));
        }

        Assert.Equal([("telemetry", Encoding.UTF8.GetString(body))], h.Api.Calls);
    }

    [Fact]
    public async Task Block1_OutOfOrder_Is408()
    {
        await using var h = await CoapServerHarness.StartAsync();
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, h.NextId(), Token, "api/v1/good/telemetry",
            w => w.UInt(CoapOptionNumber.Block1, new CoapBlock(2, false, 0).Encode()), new byte[5]));
        Assert.Equal(CoapCode.RequestEntityIncomplete, (await h.ReceiveAsync()).Code);
    }

    [Fact]
    public async Task FirmwareDownload_IsServedBlockWise_ByteForByte()
    {
        await using var h = await CoapServerHarness.StartAsync(o => o.BlockSize = 64);
        h.Api.Firmware = Enumerable.Range(0, 1000).Select(i => (byte)(i * 31)).ToArray();
        var received = new List<byte>();
        for (var n = 0; ; n++)
        {
            await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Get, h.NextId(), Token, "api/v1/good/firmware",
                n == 0 ? null : w => w.UInt(CoapOptionNumber.Block2, new CoapBlock(n, false, 2).Encode()), null, "title=fw", "version=1"));
            var reply = await h.ReceiveAsync();
            Assert.Equal(CoapCode.Content, reply.Code);
            Assert.True(CoapBlock.TryDecode(reply.UInt(CoapOptionNumber.Block2)!.Value, out var block));
            Assert.Equal(n, block.Number);
            Assert.Equal(64, block.Size);
            received.AddRange(reply.Payload);
            if (!block.More)
            {
                break;
            }
        }

        Assert.Equal(h.Api.Firmware, received.ToArray());
    }

    [Fact]
    public async Task LargeGetResponse_IsSlicedWithBlock2_AndSize2()
    {
        await using var h = await CoapServerHarness.StartAsync(o => o.BlockSize = 16);
        for (var i = 0; i < 10; i++)
        {
            h.Api.Shared.Add(new AttributeKv(1, new Perf.Core.Telemetry.KvEntry("key" + i, "value" + i)));
        }

        var body = new List<byte>();
        int? size2 = null;
        for (var n = 0; ; n++)
        {
            await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Get, h.NextId(), Token, "api/v1/good/attributes",
                n == 0 ? null : w => w.UInt(CoapOptionNumber.Block2, new CoapBlock(n, false, 0).Encode())));
            var reply = await h.ReceiveAsync();
            size2 ??= (int?)reply.UInt(CoapOptionNumber.Size2);
            Assert.True(CoapBlock.TryDecode(reply.UInt(CoapOptionNumber.Block2)!.Value, out var block));
            body.AddRange(reply.Payload);
            if (!block.More)
            {
                break;
            }
        }

        var json = Encoding.UTF8.GetString(body.ToArray());
        Assert.StartsWith("{\"client\":{\"a\":1},\"shared\":{\"s\":\"x\",\"key0\":\"value0\"", json);
        Assert.Equal(size2, body.Count);
    }

    [Fact]
    public async Task LargeObservations_GoOutBlockByBlock_AndTheRestComesFromTheSameRepresentation()
    {
        await using var h = await CoapServerHarness.StartAsync(o => o.BlockSize = 16);
        for (var i = 0; i < 10; i++)
        {
            h.Api.Shared.Add(new AttributeKv(1, new Perf.Core.Telemetry.KvEntry("key" + i, "value" + i)));
        }

        // The registration's answer: shared attributes only, first block, then the rest by GET with Block2 and no
        // Observe; a fresh GET would serve the client-and-shared representation and corrupt the stitched document.
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Get, h.NextId(), Token, "api/v1/good/attributes",
            w => w.UInt(CoapOptionNumber.Observe, 0)));
        var registered = await h.ReceiveAsync();
        Assert.NotNull(registered.UInt(CoapOptionNumber.Observe));
        var shared = await RestOfBlocksAsync(h, registered, "api/v1/good/attributes");
        Assert.StartsWith("{\"s\":\"x\",\"key0\":\"value0\"", shared);
        Assert.EndsWith("\"key9\":\"value9\"}", shared);

        // A notification larger than a block carries its first block; the datagram never exceeds it.
        var session = Assert.Single(h.Sessions.Sessions);
        var big = new string('v', 100);
        session.PushAttributeUpdate([new Perf.Core.Telemetry.KvEntry("big", big)], []);
        var notification = await h.ReceiveAsync();
        Assert.Equal(16, notification.Payload.Length);
        await h.SendAsync([0x60, 0x00, (byte)(notification.MessageId >> 8), (byte)notification.MessageId]);
        Assert.Equal("{\"big\":\"" + big + "\"}", await RestOfBlocksAsync(h, notification, "api/v1/good/attributes"));

        // The same for a large RPC on the rpc resource.
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Get, h.NextId(), Token, "api/v1/good/rpc",
            w => w.UInt(CoapOptionNumber.Observe, 0)));
        Assert.Equal(CoapCode.Content, (await h.ReceiveAsync()).Code);
        Assert.True(session.PushRpcRequest(new RpcRequest(9, Guid.NewGuid(), "configure", "{\"blob\":\"" + big + "\"}", false, 0, false)));
        var rpc = await h.ReceiveAsync();
        await h.SendAsync([0x60, 0x00, (byte)(rpc.MessageId >> 8), (byte)rpc.MessageId]);
        Assert.Equal("{\"id\":9,\"method\":\"configure\",\"params\":{\"blob\":\"" + big + "\"}}", await RestOfBlocksAsync(h, rpc, "api/v1/good/rpc"));
    }

    /// <summary>RFC 7959 §3.4: the first block came in <paramref name="first"/>; GETs the following ones by NUM, no Observe.</summary>
    private static async Task<string> RestOfBlocksAsync(CoapServerHarness h, CoapTestMessage first, string path)
    {
        Assert.True(CoapBlock.TryDecode(first.UInt(CoapOptionNumber.Block2)!.Value, out var block));
        Assert.True(block.More);
        var size2 = (int)first.UInt(CoapOptionNumber.Size2)!.Value;
        var body = new List<byte>(first.Payload.ToArray());
        for (var n = 1; block.More; n++)
        {
            var num = n;
            await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Get, h.NextId(), Token, path,
                w => w.UInt(CoapOptionNumber.Block2, new CoapBlock(num, false, block.SizeExponent).Encode())));
            var reply = await h.ReceiveAsync();
            Assert.Equal(CoapCode.Content, reply.Code);
            Assert.True(CoapBlock.TryDecode(reply.UInt(CoapOptionNumber.Block2)!.Value, out block));
            Assert.Equal(num, block.Number);
            body.AddRange(reply.Payload.ToArray());
        }

        Assert.Equal(size2, body.Count);
        return Encoding.UTF8.GetString(body.ToArray());
    }

    [Fact]
    public async Task ClientRpc_AnswersContentWithTheCoreReply()
    {
        await using var h = await CoapServerHarness.StartAsync();
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, h.NextId(), Token, "api/v1/good/rpc",
            payload: "{\"method\":\"getTime\",\"params\":{}}"u8.ToArray()));
        var reply = await h.ReceiveAsync();
        Assert.Equal(CoapCode.Content, reply.Code);
        Assert.Equal("{\"time\":42}", reply.Text);
    }

    [Fact]
    public async Task MalformedConfirmable_IsReset_GarbageIsIgnored_AndTheServerKeepsAnswering()
    {
        await using var h = await CoapServerHarness.StartAsync();
        await h.SendAsync([0x49, 0x01, 0x33, 0x44, 1, 2, 3, 4, 5, 6, 7, 8, 9]); // CON with TKL 9
        var rst = await h.ReceiveAsync();
        Assert.Equal(CoapMessageType.Reset, rst.Type);
        Assert.Equal(0x3344, rst.MessageId);

        var random = new Random(1);
        for (var i = 0; i < 2000; i++)
        {
            var garbage = new byte[random.Next(0, 200)];
            random.NextBytes(garbage);
            if (garbage.Length > 0)
            {
                garbage[0] = (byte)((garbage[0] & 0xCF) | 0x10); // NON or other versions: never answered
            }

            await h.SendAsync(garbage);
        }

        // A flood can overrun the socket's receive buffer, and UDP drops what does not fit: like a real
        // CoAP client (RFC 7252 §4.2), retransmit the confirmable ping until it is answered.
        CoapTestMessage? pong = null;
        for (var attempt = 0; attempt < 8 && pong is null; attempt++)
        {
            await h.SendAsync([0x40, 0x00, 0x12, 0x34]);
            try
            {
                CoapTestMessage reply;
                do
                {
                    reply = await h.ReceiveAsync(2000); // skip answers to garbage that happened to be valid requests
                }
                while (reply.MessageId != 0x1234);
                pong = reply;
            }
            catch (OperationCanceledException)
            {
                // Dropped under the flood: send again.
            }
        }

        Assert.NotNull(pong);
        Assert.Equal(CoapMessageType.Reset, pong.Type);
        Assert.True(h.Server.MalformedDatagrams > 0);
    }

    [Fact]
    public async Task ARequestLargerThanADatagram_Is413_WithABlock1SizeHint()
    {
        await using var h = await CoapServerHarness.StartAsync(o => o.MaxDatagramSize = 256);
        await h.SendAsync(CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, h.NextId(), Token, "api/v1/good/telemetry",
            payload: new byte[1000]));
        var reply = await h.ReceiveAsync();
        Assert.Equal(CoapCode.RequestEntityTooLarge, reply.Code);
        Assert.NotNull(reply.UInt(CoapOptionNumber.Block1));
        Assert.Empty(h.Api.Calls);
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (var i = 0; i < 100 && !condition(); i++)
        {
            await Task.Delay(50);
        }

        Assert.True(condition());
    }
}
