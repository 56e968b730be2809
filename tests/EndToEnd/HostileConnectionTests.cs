using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Perf.EndToEnd;

/// <summary>
/// Hostile clients against every door of a host of their own (short connect timeout, small MQTT output
/// limit, BINARY framing on the default TCP integration): each attack is closed promptly, a well-behaved
/// client is served during and after it, the managed heap stays bounded, and the case is logged as one
/// Warning per burst with its reason (per connection only at Debug).
/// </summary>
public sealed class HostileConnectionTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(10);
    private readonly HostFixtureWithSettings _host = new(Settings());
    private LogCapture _logs = null!;
    private TenantRest _rest = null!;
    private string _token = null!;
    private Guid _deviceId;

    private HostFixture Fixture => _host.Fixture;

    private static Dictionary<string, string?> Settings()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Mqtt:ConnectTimeout"] = "00:00:02",
            ["Mqtt:MaxOutputBufferSize"] = "262144",
            ["LIMITS_LOG_SUMMARY_SECONDS"] = "2",
            ["TcpIntegration:ClientConfiguration:HandlerConfiguration:HandlerType"] = "BINARY",
            ["TcpIntegration:ClientConfiguration:HandlerConfiguration:ByteOrder"] = "BIG_ENDIAN",
            ["TcpIntegration:ClientConfiguration:HandlerConfiguration:LengthFieldLength"] = "4",
            ["TcpIntegration:ClientConfiguration:HandlerConfiguration:MaxFrameLength"] = "1024",
            ["TcpIntegration:ClientConfiguration:HandlerConfiguration:InitialBytesToStrip"] = "4",
        };
        LogCapture.Configure(settings);
        return settings;
    }

    public async Task InitializeAsync()
    {
        await _host.InitializeAsync();
        _logs = LogCapture.Attach(Fixture);
        _rest = await TenantRest.LoginAsync(Fixture);
        (_deviceId, _token, _) = await _rest.CreateDeviceAsync("well-behaved");
    }

    public async Task DisposeAsync()
    {
        _rest.Dispose();
        await _host.DisposeAsync();
    }

    [Fact]
    public async Task MqttRandomBytes_EachConnectionIsClosed_AGoodClientIsServed_OneWarningPerBurst()
    {
        double heapBefore = Memory.HeapMiB();
        int mark = _logs.Mark();
        var random = new Random(13);
        var attacks = Enumerable.Range(0, 40).Select(async i =>
        {
            using var socket = await RawMqtt.OpenAsync(Fixture.Endpoints.Mqtt!.Port);
            var garbage = new byte[8192];
            random.NextBytes(garbage);
            garbage[0] = (byte)(0x20 + (i % 0xC0)); // anything but CONNECT (0x10) first
            garbage[1] = 0x05; // a short remaining length, so the first packet is complete and judged at once
            try
            {
                await socket.SendAsync(garbage);
            }
            catch (SocketException)
            {
                // Closed while we were still sending: that is the point.
            }

            return await RawMqtt.ClosedWithinAsync(socket, Prompt);
        }).ToArray();

        await GoodMqttClientPublishesAsync(); // during the attack
        Assert.All(await Task.WhenAll(attacks), Assert.True);
        await GoodMqttClientPublishesAsync(); // and after it

        Report("mqtt random bytes", heapBefore);
        // One Debug line per connection with its reason; Warnings: the start of the burst and summaries, not 40.
        Assert.Equal(40, _logs.Count(LogLevel.Debug, "closed: protocol violation", mark));
        await Eventually.TrueAsync(() => _logs.Count(LogLevel.Warning, "more connections closed: protocol violation in the last 2 s", mark) >= 1);
        Assert.InRange(_logs.Count(LogLevel.Warning, "connections closed: protocol violation", mark), 1, 4);
        Assert.DoesNotContain(_logs.Lines, l => l.Text.Contains(_token, StringComparison.Ordinal));
    }

    [Fact]
    public async Task MqttRemainingLengthOf268MB_IsClosedAtOnce_WithoutBuffering()
    {
        // Before CONNECT and after a good CONNECT: a PUBLISH announcing 268,435,455 bytes (the MQTT maximum).
        using (var early = await RawMqtt.OpenAsync(Fixture.Endpoints.Mqtt!.Port))
        {
            await early.SendAsync(new byte[] { 0x10, 0xFF, 0xFF, 0xFF, 0x7F });
            var watch = Stopwatch.StartNew();
            Assert.True(await RawMqtt.ClosedWithinAsync(early, Prompt));
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1.5), $"closed after {watch.Elapsed}, the connect timeout is 2 s: it must not wait for the body");
        }

        using var socket = await RawMqtt.OpenAsync(Fixture.Endpoints.Mqtt!.Port);
        await socket.SendAsync(RawMqtt.Connect(_token, "oversize"));
        var connAck = await RawMqtt.ReadExactlyAsync(socket, 4, Prompt);
        Assert.Equal(0, connAck[3]);
        await socket.SendAsync(new byte[] { 0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x01, (byte)'t' });
        Assert.True(await RawMqtt.ClosedWithinAsync(socket, Prompt));
        Assert.True(_logs.Count(LogLevel.Debug, "protocol violation PacketTooLarge") >= 1);
        await GoodMqttClientPublishesAsync();
    }

    [Fact]
    public async Task TcpIntegration_RandomBytesAndA2GBLengthField_AreClosedPromptly_AndAGoodFrameStillWorks()
    {
        double heapBefore = Memory.HeapMiB();
        int mark = _logs.Mark();
        var port = Fixture.Endpoints.TcpIntegration!.Port;
        using (var twoGb = await RawMqtt.OpenAsync(port))
        {
            await twoGb.SendAsync(new byte[] { 0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3 });
            Assert.True(await RawMqtt.ClosedWithinAsync(twoGb, Prompt));
        }

        var random = new Random(2);
        for (int i = 0; i < 20; i++)
        {
            using var socket = await RawMqtt.OpenAsync(port);
            var garbage = new byte[16384];
            random.NextBytes(garbage);
            garbage[0] = 0x40; // a length field far above maxFrameLength
            try
            {
                await socket.SendAsync(garbage);
            }
            catch (SocketException)
            {
            }

            Assert.True(await RawMqtt.ClosedWithinAsync(socket, Prompt));
        }

        Report("tcp 2 GB length field and random bytes", heapBefore);
        Assert.Equal(21, _logs.Count(LogLevel.Debug, "closed: FrameTooLong", mark));
        Assert.Equal(1, _logs.Count(LogLevel.Warning, "tcp: connections closed: framing error (", mark));

        // A well-formed frame on a fresh connection is still decoded (CSV converter: name,type,key,value).
        using var good = await RawMqtt.OpenAsync(port);
        var line = Encoding.UTF8.GetBytes("hostile-tcp-ok,default,temperature,21.5");
        var frame = new byte[4 + line.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(frame, line.Length);
        line.CopyTo(frame, 4);
        await good.SendAsync(frame);
        await Eventually.TrueAsync(async () =>
        {
            var response = await _rest.Http.GetAsync("/api/tenant/devices?deviceName=hostile-tcp-ok");
            return response.IsSuccessStatusCode;
        }, 20_000);
    }

    [Fact]
    public async Task HttpRandomBytes_AreAnsweredAndClosed_AndTheApiKeepsAnswering()
    {
        var random = new Random(3);
        for (int i = 0; i < 20; i++)
        {
            using var socket = await RawMqtt.OpenAsync(Fixture.Endpoints.Http!.Port);
            var garbage = new byte[8192];
            random.NextBytes(garbage);
            try
            {
                await socket.SendAsync(garbage);
            }
            catch (SocketException)
            {
            }

            Assert.True(await RawMqtt.ClosedWithinAsync(socket, Prompt));
        }

        using var http = Fixture.CreateHttpClient();
        using var content = new StringContent("""{"during":1}""", Encoding.UTF8, "application/json");
        Assert.Equal(HttpStatusCode.OK, (await http.PostAsync($"/api/v1/{_token}/telemetry", content)).StatusCode);
    }

    [Fact]
    public async Task MqttConnectTrickledOneBytePerSecond_IsClosedAtTheConnectTimeout_CountedFromAccept()
    {
        var connect = RawMqtt.Connect(_token, "trickle");
        using var socket = await RawMqtt.OpenAsync(Fixture.Endpoints.Mqtt!.Port);
        var watch = Stopwatch.StartNew();
        var closed = RawMqtt.ClosedWithinAsync(socket, TimeSpan.FromSeconds(30));
        int sent = 0;
        while (!closed.IsCompleted && sent < connect.Length)
        {
            try
            {
                await socket.SendAsync(connect.AsMemory(sent, 1));
            }
            catch (SocketException)
            {
                break;
            }

            sent++;
            await Task.WhenAny(closed, Task.Delay(1000));
        }

        Assert.True(await closed);
        output.WriteLine($"trickled CONNECT: closed after {watch.Elapsed.TotalSeconds:F1} s, {sent} of {connect.Length} bytes sent");
        // Timeout 2 s, checked every 1 s; a per-read timeout would never fire at one byte per second.
        Assert.InRange(watch.Elapsed.TotalSeconds, 1.5, 12);
        Assert.True(sent < connect.Length, $"the whole CONNECT ({connect.Length} bytes) went through before the close");
        Assert.True(_logs.Count(LogLevel.Debug, "closed: no CONNECT within 00:00:02") >= 1);
    }

    [Fact]
    public async Task MqttConnectionsThatNeverSendConnect_AreClosedAtTheTimeout_AndDoNotStopAGoodClient()
    {
        int mark = _logs.Mark();
        var idle = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => RawMqtt.OpenAsync(Fixture.Endpoints.Mqtt!.Port)));
        try
        {
            await GoodMqttClientPublishesAsync();
            var closed = await Task.WhenAll(idle.Select(s => RawMqtt.ClosedWithinAsync(s, TimeSpan.FromSeconds(20))));
            Assert.All(closed, Assert.True);
        }
        finally
        {
            foreach (var socket in idle)
            {
                socket.Dispose();
            }
        }

        Assert.Equal(40, _logs.Count(LogLevel.Debug, "closed: no CONNECT within", mark));
        Assert.InRange(_logs.Count(LogLevel.Warning, "connections closed: no CONNECT in time", mark), 1, 4);
    }

    [Fact]
    public async Task MqttSubscriberThatNeverReads_IsDroppedPastTheOutputLimit_AndMemoryStaysBounded()
    {
        double heapBefore = Memory.HeapMiB();
        var (deviceId, token, _) = await _rest.CreateDeviceAsync("never-reads");
        using var socket = await RawMqtt.OpenAsync(Fixture.Endpoints.Mqtt!.Port, receiveBuffer: 4096);
        await socket.SendAsync(RawMqtt.Connect(token, "never-reads"));
        Assert.Equal(0, (await RawMqtt.ReadExactlyAsync(socket, 4, Prompt))[3]);
        await socket.SendAsync(RawMqtt.Subscribe(1, "v1/devices/me/attributes", 0));
        await RawMqtt.ReadExactlyAsync(socket, 5, Prompt);

        // From here on the client never reads. 48 KiB attribute pushes fill the socket buffers, the pipe,
        // then the 256 KiB output limit: the server drops the session instead of buffering more.
        var value = new string('x', 48 * 1024);
        int posts = 0;
        while (_logs.Count(LogLevel.Warning, "output buffer full") == 0)
        {
            Assert.True(posts < 2000, "never dropped");
            await _rest.SaveSharedAsync(deviceId, $$"""{"blob{{posts % 4}}":"{{value}}{{posts}}"}""");
            posts++;
        }

        Assert.Contains(_logs.Lines, l => l.Level == LogLevel.Warning && l.Text.Contains("mqtt: connections closed: output buffer full (client not reading)"));
        output.WriteLine($"non-reading subscriber: dropped after {posts} pushes of 48 KiB");
        Report("non-reading subscriber", heapBefore, 150);
        await GoodMqttClientPublishesAsync();
    }

    [Fact]
    public async Task CoapDatagramFlood_GarbageAndValid_AGoodClientIsStillAnswered_AndMemoryStaysBounded()
    {
        double heapBefore = Memory.HeapMiB();
        int mark = _logs.Mark();
        var server = HostFixture.Loopback(Fixture.Endpoints.Coap!);
        using var flood = new UdpClient(AddressFamily.InterNetwork);
        var random = new Random(5);
        var garbage = new byte[512];
        for (int i = 0; i < 5000; i++)
        {
            random.NextBytes(garbage);
            garbage[0] = (byte)(0x40 | (garbage[0] & 0x3F)); // version 1, so it is parsed before it is refused
            await flood.SendAsync(garbage.AsMemory(0, 1 + random.Next(garbage.Length - 1)), server);
            await flood.SendAsync(RawCoap.PostTelemetry((ushort)i, _token, $$"""{"flood":{{i}}}"""), server);
        }

        using var good = new UdpClient(AddressFamily.InterNetwork);
        var code = await RawCoap.ExchangeAsync(good, server, RawCoap.PostTelemetry(7, _token, """{"afterFlood":1}"""), TimeSpan.FromSeconds(30));
        Assert.Equal(0x41, code); // 2.01 Created
        await Eventually.TrueAsync(async () => (await _rest.LatestTimeseriesAsync(_deviceId, "afterFlood")).ContainsKey("afterFlood"));
        Report("coap flood of 10,000 datagrams", heapBefore, 150);
        Assert.InRange(_logs.Count(LogLevel.Warning, "datagrams ignored as malformed", mark), 1, 20);
    }

    /// <summary>Generous bound on the managed heap's growth (host and test share the process), printed for docs/RELIABILITY.md.</summary>
    private void Report(string attack, double heapBefore, double maxGrowthMiB = 100)
    {
        double growth = Memory.HeapMiB() - heapBefore;
        output.WriteLine($"{attack}: managed heap {heapBefore:F1} MiB before, {growth:+0.0;-0.0} MiB after");
        Assert.InRange(growth, -1000, maxGrowthMiB);
    }

    private async Task GoodMqttClientPublishesAsync()
    {
        await using var device = await MqttDevice.ConnectAsync(Fixture, _token);
        await device.PublishAsync("v1/devices/me/telemetry", """{"goodClient":1}""");
    }
}
