using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Tcp.Tests;

public sealed class TcpIntegrationHandlerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static TcpIntegrationOptions SeedOptions(bool downlink = true) => new()
    {
        Name = "TCP integration",
        UplinkConverter = TcpConverterConfiguration.JsDecoder(SeedScripts.Decoder),
        DownlinkConverter = downlink ? TcpConverterConfiguration.JsEncoder(SeedScripts.Encoder) : null,
    };

    private static (TcpIntegrationHandler Handler, InMemoryConnection Connection, Task Running) Start(TcpIntegrationOptions options, RecordingUplinkSink sink)
    {
        var handler = new TcpIntegrationHandler(TcpIntegration.Create(options), sink, NullLogger<TcpIntegrationHandler>.Instance);
        var connection = new InMemoryConnection();
        return (handler, connection, handler.OnConnectedAsync(connection));
    }

    private static async Task SendAsync(InMemoryConnection connection, string text, bool end = false) =>
        await SendAsync(connection, Encoding.UTF8.GetBytes(text), end);

    private static async Task SendAsync(InMemoryConnection connection, byte[] bytes, bool end = false)
    {
        await connection.Device.Output.WriteAsync(bytes);
        if (end)
        {
            await connection.Device.Output.CompleteAsync();
        }
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting");
            await Task.Delay(5);
        }
    }

    private static async Task<string> ReadLineAsync(PipeReader reader)
    {
        using var cts = new CancellationTokenSource(Timeout);
        while (true)
        {
            var result = await reader.ReadAsync(cts.Token);
            var buffer = result.Buffer;
            var position = buffer.PositionOf((byte)'\n');
            if (position is not null)
            {
                var line = Encoding.UTF8.GetString(buffer.Slice(0, buffer.GetPosition(1, position.Value)).ToArray());
                reader.AdvanceTo(buffer.GetPosition(1, position.Value));
                return line;
            }

            Assert.False(result.IsCompleted, "the connection closed before a full line");
            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SeedsTwoLines_AreDecodedAndPublished_AndTheConnectionClosesCleanlyOnEof(bool asyncSink)
    {
        var sink = new RecordingUplinkSink { Async = asyncSink };
        var options = SeedOptions();
        options.OfflineDownlinkSeconds = 0;
        var (_, connection, running) = Start(options, sink);

        // echo -e 'SN-002,default,temperature,25.7\nSN-002,default,humidity,69' | nc -q1 -w1 localhost 10560
        await SendAsync(connection, "SN-002,default,temperature,25.7\nSN-002,default,humidity,69\n", end: true);
        await running.WaitAsync(Timeout);

        var uplinks = sink.Uplinks.ToArray();
        Assert.Equal(2, uplinks.Length);
        Assert.All(uplinks, u => Assert.Equal(("SN-002", "default", true), (u.DeviceName, u.DeviceType, u.AllowCreate)));
        Assert.Equal("temperature", uplinks[0].Telemetry.Single().Entry.Key);
        Assert.Equal(25.7, uplinks[0].Telemetry.Single().Entry.DoubleValue);
        Assert.Equal(new KvEntry("humidity", 69L), uplinks[1].Telemetry.Single().Entry);

        var opened = Assert.Single(sink.Opened);
        Assert.Equal("TCP", opened.Transport);
        Assert.Same(opened, Assert.Single(sink.Closed));
    }

    [Fact]
    public async Task SharedAttributeUpdate_IsEncodedBySeedsEncoder_AndArrivesWithANewline()
    {
        var sink = new RecordingUplinkSink();
        var (handler, connection, running) = Start(SeedOptions(), sink);

        // nc localhost 10560, then type the uplink and keep the terminal open.
        await SendAsync(connection, "SN-002,default,temperature,25.7\n");
        await WaitUntil(() => !sink.Opened.IsEmpty);
        sink.Opened.TryPeek(out var session);
        Assert.True(session!.WantsAttributeUpdates);

        session.PushAttributeUpdate([new KvEntry("powerState", "on")], []);
        Assert.Equal("{\"powerState\":\"on\"}\n", await ReadLineAsync(connection.Device.Input));
        Assert.Equal(1, handler.Integration.DownlinkEvents.MessageCount);

        Assert.True(session.PushRpcRequest(new Core.RpcRequest(7, Guid.NewGuid(), "setMode", """{"mode":"eco"}""", false, 0, false)));
        Assert.Equal("{\"method\":\"setMode\",\"params\":{\"mode\":\"eco\"}}\n", await ReadLineAsync(connection.Device.Input));

        await connection.Device.Output.CompleteAsync();
        await running.WaitAsync(Timeout);
        Assert.True(session.IsParked());
        Assert.True(session.PushRpcRequest(new Core.RpcRequest(8, Guid.NewGuid(), "late", "{}", true, 0, false))); // waits for the next connection
    }

    [Fact]
    public async Task DownlinkForADisconnectedDevice_WaitsForItsNextConnection()
    {
        var sink = new RecordingUplinkSink();
        var integration = TcpIntegration.Create(SeedOptions());
        var handler = new TcpIntegrationHandler(integration, sink, NullLogger<TcpIntegrationHandler>.Instance);

        // echo -e 'SN-002,default,temperature,25.7' | nc -q0 localhost 10560: the connection is gone at once.
        var first = new InMemoryConnection();
        var firstRun = handler.OnConnectedAsync(first);
        await SendAsync(first, "SN-002,default,temperature,25.7\n", end: true);
        await firstRun.WaitAsync(Timeout);
        sink.Opened.TryPeek(out var parked);
        Assert.Empty(sink.Closed); // still registered: it queues

        parked!.PushAttributeUpdate([new KvEntry("powerState", "on")], []);

        var second = new InMemoryConnection();
        var secondRun = handler.OnConnectedAsync(second);
        await SendAsync(second, "SN-002,default,humidity,69\n");
        Assert.Equal("{\"powerState\":\"on\"}\n", await ReadLineAsync(second.Device.Input));
        Assert.Equal(2, sink.Opened.Count);
        Assert.False(parked.PushRpcRequest(new Core.RpcRequest(1, Guid.NewGuid(), "m", "{}", true, 0, false)));

        await second.Device.Output.CompleteAsync();
        await secondRun.WaitAsync(Timeout);
    }

    [Fact]
    public async Task ParkedSession_IsClosedWhenItsTimeIsUp()
    {
        var sink = new RecordingUplinkSink();
        var options = SeedOptions();
        options.OfflineDownlinkSeconds = 1;
        var (_, connection, running) = Start(options, sink);
        await SendAsync(connection, "SN-002,default,temperature,25.7\n", end: true);
        await running.WaitAsync(Timeout);
        Assert.Empty(sink.Closed);
        await WaitUntil(() => !sink.Closed.IsEmpty);
        sink.Opened.TryPeek(out var session);
        Assert.Same(session, Assert.Single(sink.Closed));
    }

    [Fact]
    public async Task EveryDeviceDecodedOnAConnection_GetsItsOwnSession_AndTheCoreMayCloseOne()
    {
        var sink = new RecordingUplinkSink();
        var (_, connection, running) = Start(SeedOptions(), sink);
        await SendAsync(connection, "A,t,x,1\nB,t,x,2\nA,t,x,3\n");
        await WaitUntil(() => sink.Uplinks.Count == 3);
        var sessions = sink.Opened.ToArray();
        Assert.Equal(2, sessions.Length);
        Assert.NotEqual(sessions[0].DeviceId, sessions[1].DeviceId);

        // The core moves A elsewhere: its pushes stop, B's still arrive, the connection stays open.
        sessions[0].Close("replaced by a newer session");
        sessions[0].PushAttributeUpdate([new KvEntry("k", 1L)], []);
        sessions[1].PushAttributeUpdate([new KvEntry("k", 2L)], []);
        Assert.Equal("{\"k\":2}\n", await ReadLineAsync(connection.Device.Input));

        await SendAsync(connection, "A,t,x,4\n", end: true);
        await running.WaitAsync(Timeout);
        Assert.Equal(3, sink.Opened.Count); // A came back on this connection: a new session
    }

    [Fact]
    public async Task OversizedLine_ClosesItsConnection_WithAnEvent()
    {
        var sink = new RecordingUplinkSink { Async = true };
        var (handler, connection, running) = Start(SeedOptions(), sink);
        await SendAsync(connection, "SN-002,default,temperature,25.7\n" + new string('x', 300));
        await running.WaitAsync(Timeout);

        Assert.Equal("SN-002", Assert.Single(sink.Uplinks).DeviceName);
        Assert.Contains("FrameTooLong", handler.Integration.IntegrationEvents.LastError!.Data);
        Assert.Contains("closed", handler.Integration.IntegrationEvents.LastError!.Data);
        Assert.Single(sink.Opened); // the line before the violation was seen through
    }

    [Fact]
    public async Task OversizedLine_IsDroppedWithAnEvent_AndTheConnectionGoesOn_WhenDropOversizedFrames()
    {
        var sink = new RecordingUplinkSink();
        var options = SeedOptions();
        options.DropOversizedFrames = true;
        var (handler, connection, running) = Start(options, sink);
        await SendAsync(connection, new string('x', 300));
        await SendAsync(connection, new string('y', 300) + "\nSN-002,default,temperature,25.7\n", end: true);
        await running.WaitAsync(Timeout);

        Assert.Equal("SN-002", Assert.Single(sink.Uplinks).DeviceName);
        Assert.Contains("FrameTooLong", handler.Integration.IntegrationEvents.LastError!.Data);
    }

    [Fact]
    public async Task ConverterErrorsAndRejectedUplinks_AreEvents_NotDisconnects()
    {
        var sink = new RecordingUplinkSink { Reject = "ghost" };
        var options = SeedOptions();
        options.UplinkConverter = TcpConverterConfiguration.JsDecoder("if (payload[0] == 33) throw new Error('bang'); " + SeedScripts.Decoder);
        var (handler, connection, running) = Start(options, sink);
        await SendAsync(connection, "!oops\nghost,t,x,1\n\nSN-002,default,humidity,69", end: true);
        await running.WaitAsync(Timeout);

        Assert.Equal("SN-002", Assert.Single(sink.Uplinks).DeviceName); // the last line had no newline: taken at EOF
        Assert.Equal(1, handler.Integration.UplinkEvents.ErrorCount);
        Assert.Contains("bang", handler.Integration.UplinkEvents.LastError!.Data);
        Assert.Contains("ghost", handler.Integration.IntegrationEvents.LastError!.Data);
    }

    [Fact]
    public async Task DebugMode_RecordsInAndOutEvents()
    {
        var sink = new RecordingUplinkSink();
        var options = SeedOptions();
        options.DebugMode = true;
        var (handler, connection, running) = Start(options, sink);
        await SendAsync(connection, "SN-002,default,temperature,25.7\n", end: true);
        await running.WaitAsync(Timeout);

        var events = handler.Integration.UplinkEvents.Snapshot();
        Assert.Equal([ConverterEventType.Out, ConverterEventType.In], events.Select(e => e.Type));
        Assert.Equal("SN-002,default,temperature,25.7", events[1].Data);
    }

    [Fact]
    public async Task Latin1Text_IsTranscodedToUtf8_BeforeTheDecoder()
    {
        var sink = new RecordingUplinkSink();
        var options = SeedOptions(downlink: false);
        options.ClientConfiguration.HandlerConfiguration.CharsetName = "ISO-8859-1";
        var (_, connection, running) = Start(options, sink);
        await SendAsync(connection, [.. "Ger"u8, 0xE4, .. "t,default,t,1\n"u8], end: true);
        await running.WaitAsync(Timeout);
        Assert.Equal("Gerät", Assert.Single(sink.Uplinks).DeviceName);
    }

    [Fact]
    public async Task BinaryHandler_WithJsonConverter_PublishesLengthPrefixedMessages()
    {
        var sink = new RecordingUplinkSink();
        var options = new TcpIntegrationOptions
        {
            UplinkConverter = new TcpConverterConfiguration { ScriptLang = TcpScriptLang.JSON },
        };
        options.ClientConfiguration.HandlerConfiguration = new TcpHandlerConfiguration
        {
            HandlerType = TcpHandlerType.BINARY,
            LengthFieldLength = 2,
            ByteOrder = TcpByteOrder.BIG_ENDIAN,
            InitialBytesToStrip = 2,
            MaxFrameLength = 256,
        };
        var (_, connection, running) = Start(options, sink);
        var body = """{"deviceName":"bin-1","attributes":{"fw":"2.1"}}"""u8.ToArray();
        byte[] frame = [(byte)(body.Length >> 8), (byte)body.Length, .. body];
        foreach (var b in frame.Concat(frame))
        {
            await SendAsync(connection, [b]);
        }

        await connection.Device.Output.CompleteAsync();
        await running.WaitAsync(Timeout);
        Assert.Equal(2, sink.Uplinks.Count);
        Assert.All(sink.Uplinks, u => Assert.Equal(new KvEntry("fw", "2.1"), Assert.Single(u.Attributes)));
    }

    [Fact]
    public async Task UnrecoverableFramingError_ClosesOnlyThatConnection()
    {
        var sink = new RecordingUplinkSink();
        var options = new TcpIntegrationOptions { UplinkConverter = new TcpConverterConfiguration { ScriptLang = TcpScriptLang.JSON } };
        options.ClientConfiguration.HandlerConfiguration.HandlerType = TcpHandlerType.JSON;
        var integration = TcpIntegration.Create(options);
        var handler = new TcpIntegrationHandler(integration, sink, NullLogger<TcpIntegrationHandler>.Instance);
        var bad = new InMemoryConnection();
        var good = new InMemoryConnection();
        var badRun = handler.OnConnectedAsync(bad);
        var goodRun = handler.OnConnectedAsync(good);

        await SendAsync(bad, "not json");
        await badRun.WaitAsync(Timeout);
        Assert.Contains("InvalidJson", integration.IntegrationEvents.LastError!.Data);

        await SendAsync(good, """{"deviceName":"ok","telemetry":{"t":1}}""", end: true);
        await goodRun.WaitAsync(Timeout);
        Assert.Equal("ok", Assert.Single(sink.Uplinks).DeviceName);
    }

    [Fact]
    public async Task DisabledIntegration_RefusesConnections()
    {
        var options = SeedOptions();
        options.Enabled = false;
        var (_, connection, running) = Start(options, new RecordingUplinkSink());
        await running.WaitAsync(Timeout);
        Assert.True(connection.Aborted);
    }
}

internal static class SessionTestExtensions
{
    public static bool IsParked(this Perf.Core.IDeviceSession session) => ((Perf.Kestrel.Tcp.Internal.TcpDeviceSession)session).IsParked;
}
