using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Perf.Load.Wire;

namespace Perf.Load.Tests;

/// <summary>
/// The connect storm's lane (<see cref="MqttConnector"/>) against a loopback MQTT stub: each CONNECT is read
/// whole and answered as the mode says. Real sockets, no mocks of the lane.
/// </summary>
public sealed class MqttConnectorTests
{
    private enum Mode
    {
        Accept,
        RefuseNotAuthorized,
        Silent,
        CloseAfterConnect,
        AckPublishes,
        AckPublishesLate,
    }

    [Fact]
    public async Task One_lane_completes_back_to_back_handshakes_and_the_stub_saw_every_connect()
    {
        await using var stub = new Stub(Mode.Accept);
        using var connector = new MqttConnector(stub.EndPoint);
        var sockets = new List<Socket>();
        try
        {
            for (var i = 0; i < 20; i++)
            {
                sockets.Add(await connector.ConnectAsync(MqttWire.Connect($"lane-{i}", $"token-{i}", null, 0)));
            }

            Assert.All(sockets, s => Assert.True(s.Connected));
            Assert.Equal(Enumerable.Range(0, 20).Select(i => $"lane-{i}"), stub.ClientIds);
        }
        finally
        {
            sockets.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public async Task A_refused_connack_fails_the_handshake_with_its_return_code()
    {
        await using var stub = new Stub(Mode.RefuseNotAuthorized);
        using var connector = new MqttConnector(stub.EndPoint);
        var error = await Assert.ThrowsAsync<IOException>(() => connector.ConnectAsync(MqttWire.Connect("c", "bad", null, 0)).AsTask());
        Assert.Contains("return code 5", error.Message, StringComparison.Ordinal);

        // The lane is reusable after a failure.
        await Assert.ThrowsAsync<IOException>(() => connector.ConnectAsync(MqttWire.Connect("c2", "bad", null, 0)).AsTask());
    }

    [Fact]
    public async Task A_server_that_closes_before_connack_fails_the_handshake()
    {
        await using var stub = new Stub(Mode.CloseAfterConnect);
        using var connector = new MqttConnector(stub.EndPoint);
        var error = await Assert.ThrowsAnyAsync<Exception>(() => connector.ConnectAsync(MqttWire.Connect("c", "t", null, 0)).AsTask());
        Assert.True(error is IOException or SocketException, error.ToString());
    }

    [Fact]
    public async Task The_watchdog_aborts_a_handshake_the_server_never_answers()
    {
        await using var stub = new Stub(Mode.Silent);
        using var connector = new MqttConnector(stub.EndPoint);
        var handshake = connector.ConnectAsync(MqttWire.Connect("c", "t", null, 0)).AsTask();
        await stub.WaitForConnectsAsync(1);
        Assert.False(handshake.IsCompleted);

        // Started before "now": the watchdog closes it, the pending receive fails at once.
        connector.AbortIfStarted(Stopwatch.GetTimestamp());
        var error = await Assert.ThrowsAsync<IOException>(() => handshake.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("aborted", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_watchdog_leaves_a_handshake_started_after_its_deadline_alone()
    {
        await using var stub = new Stub(Mode.Silent);
        using var connector = new MqttConnector(stub.EndPoint);
        var deadline = Stopwatch.GetTimestamp();
        var handshake = connector.ConnectAsync(MqttWire.Connect("c", "t", null, 0)).AsTask();
        await stub.WaitForConnectsAsync(1);
        connector.AbortIfStarted(deadline);
        Assert.False(handshake.IsCompleted);
        connector.AbortIfStarted(long.MaxValue);
        await Assert.ThrowsAsync<IOException>(() => handshake.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task Mqtt_connect_scenario_connects_every_connection_through_its_lanes()
    {
        await using var stub = new Stub(Mode.Accept);
        var port = ((IPEndPoint)stub.EndPoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var json = Path.Combine(Path.GetTempPath(), $"mqtt-connect-{Guid.NewGuid():N}.json");
        try
        {
            var exit = await LoadCli.RunAsync(
                ["mqtt-connect", "--port", port, "--connections", "60", "--concurrency", "8", "--connect-rate", "0", "--duration", "200ms", "--settle", "0s", "--json", json],
                CancellationToken.None);
            Assert.Equal(0, exit);
            Assert.Equal(60, stub.ClientIds.Count);
            Assert.Equal(60, stub.ClientIds.Distinct().Count());
            using var report = System.Text.Json.JsonDocument.Parse(await File.ReadAllTextAsync(json));
            var extra = report.RootElement.GetProperty("extra");
            Assert.Equal("60", extra.GetProperty("connected").GetString());
            Assert.Equal("0", extra.GetProperty("failed").GetString());
            Assert.True(extra.TryGetProperty("client CPU us per connect", out _));
        }
        finally
        {
            File.Delete(json);
        }
    }

    /// <summary>Loopback MQTT stub: reads each CONNECT whole (fixed header, remaining length, client id) and answers per <see cref="Mode"/>.</summary>
    /// <summary>load/native/mqtt-connect.c, built with gcc into a temporary file, run against <paramref name="stub"/>.</summary>
    private static Task<(int ExitCode, string Output)> RunNativeAsync(Stub stub, int count, int concurrency) =>
        RunNativeAsync("mqtt-connect", stub, count.ToString(System.Globalization.CultureInfo.InvariantCulture), concurrency.ToString(System.Globalization.CultureInfo.InvariantCulture), "token-");

    private static async Task<(int ExitCode, string Output)> RunNativeAsync(string tool, Stub stub, params string[] arguments)
    {
        var port = ((IPEndPoint)stub.EndPoint).Port;
        var (exit, output, error) = await NativeTool.BuildAndRunAsync(tool, ["127.0.0.1", port.ToString(System.Globalization.CultureInfo.InvariantCulture), .. arguments]);
        return (exit, output + error);
    }

    [Fact]
    public async Task The_native_generator_connects_every_device_with_its_token_and_reports_the_rate()
    {
        await using var stub = new Stub(Mode.Accept);
        var (exit, output) = await RunNativeAsync(stub, 200, 16);
        Assert.True(exit == 0, output);
        Assert.Contains("connects: 200\n", output, StringComparison.Ordinal);
        Assert.Contains("failures: 0\n", output, StringComparison.Ordinal);
        Assert.Matches(@"connects/s: [1-9]\d*", output);
        Assert.Matches(@"CONNACK ms: p50 [\d.]+ p99 [\d.]+ max [\d.]+", output);
        Assert.Equal(Enumerable.Range(0, 200).Select(i => $"token-{i}").Order(StringComparer.Ordinal), stub.UserNames.Order(StringComparer.Ordinal));
        Assert.Equal(Enumerable.Range(0, 200).Select(i => $"c{i}").Order(StringComparer.Ordinal), stub.ClientIds.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task The_native_publisher_keeps_its_window_full_and_counts_every_puback()
    {
        await using var stub = new Stub(Mode.AckPublishes);
        // 2 connections, window 4, 64-byte payload, 1 s at full speed.
        var (exit, output) = await RunNativeAsync("mqtt-publish", stub, "2", "4", "64", "1", "0", "token-");
        Assert.True(exit == 0, output);
        var sent = long.Parse(System.Text.RegularExpressions.Regex.Match(output, @"sent: (\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        var acked = long.Parse(System.Text.RegularExpressions.Regex.Match(output, @"acked: (\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(acked, 100, sent);
        Assert.InRange(sent - acked, 0, 2 * 4);
        Assert.Matches(@"PUBACK ms: p50 [\d.]+ p90 [\d.]+ p99 [\d.]+ p99\.9 [\d.]+ max [\d.]+", output);
        var publishes = stub.Publishes;
        Assert.InRange(publishes.Count, acked, sent);
        Assert.All(publishes, p => Assert.Equal("v1/devices/me/telemetry", p.Topic));
        var payload = publishes[0].Payload;
        Assert.Equal(64, payload.Length);
        using var json = System.Text.Json.JsonDocument.Parse(payload);
        Assert.Equal(21.5, json.RootElement.GetProperty("temperature").GetDouble());
        Assert.Equal(["token-0", "token-1"], stub.UserNames.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData(nameof(Mode.AckPublishes))]
    [InlineData(nameof(Mode.AckPublishesLate))] // every PUBACK at least 10 ms after its PUBLISH was read
    public async Task The_native_publishers_timeline_accounts_for_every_puback_in_its_window(string mode)
    {
        await using var stub = new Stub(Enum.Parse<Mode>(mode));
        // 2 connections, window 4, 64-byte payload, 1 s at full speed, in windows of 100 ms.
        var (exit, output) = await RunNativeAsync("mqtt-publish", stub, "2", "4", "64", "1", "0", "token-", "100");
        Assert.True(exit == 0, output);
        var acked = long.Parse(System.Text.RegularExpressions.Regex.Match(output, @"acked: (\d+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        var max = double.Parse(System.Text.RegularExpressions.Regex.Match(output, @"PUBACK ms: .* max ([\d.]+)").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        var windows = System.Text.RegularExpressions.Regex.Matches(output, @"window ([\d.]+) s: acked (\d+), max ([\d.]+) ms, over 5 ms (\d+)")
            .Select(m => (Start: m.Groups[1].Value, Acked: long.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture),
                Max: double.Parse(m.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture), Slow: long.Parse(m.Groups[4].Value, System.Globalization.CultureInfo.InvariantCulture)))
            .ToList();

        // The run's ten windows and one for PUBACKs read just after its end, in order.
        Assert.Equal(Enumerable.Range(0, 12).Select(w => (w / 10.0).ToString("0.000", System.Globalization.CultureInfo.InvariantCulture)), windows.Select(w => w.Start));
        Assert.Equal(acked, windows.Sum(w => w.Acked));
        Assert.All(windows, w => Assert.InRange(w.Max, 0, max));
        Assert.All(windows, w => Assert.InRange(w.Slow, 0, w.Acked));
        // The run's max is the upper edge of its 10 µs histogram bucket; a window's is exact, printed to 0.01 ms.
        Assert.Contains(windows, w => max - w.Max <= 0.0101);
        if (mode == nameof(Mode.AckPublishesLate))
        {
            Assert.All(windows, w => Assert.Equal(w.Acked, w.Slow));
            Assert.InRange(acked, 20, 400);
        }
    }

    [Theory]
    [InlineData(nameof(Mode.RefuseNotAuthorized), 20, 4)] // CONNACK 5, then the server closes
    [InlineData(nameof(Mode.CloseAfterConnect), 50, 8)] // closed without any CONNACK
    public async Task The_native_generator_counts_refused_connects_as_failures_and_exits_1(string mode, int count, int concurrency)
    {
        await using var stub = new Stub(Enum.Parse<Mode>(mode));
        var (exit, output) = await RunNativeAsync(stub, count, concurrency);
        Assert.Equal(1, exit);
        Assert.Contains("connects: 0\n", output, StringComparison.Ordinal);
        Assert.Contains($"failures: {count}\n", output, StringComparison.Ordinal);
        Assert.Equal(count, stub.ClientIds.Count);
    }

    [Fact]
    public async Task The_native_generator_counts_refused_tcp_connects_as_failures()
    {
        // A port nobody listens on: every connect is refused (RST), which the generator sees as EPOLLERR.
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        var (exit, output, error) = await NativeTool.BuildAndRunAsync("mqtt-connect", ["127.0.0.1", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "30", "8", "token-"]);
        Assert.True(exit == 1, output + error);
        Assert.Contains("connects: 0\n", output, StringComparison.Ordinal);
        Assert.Contains("failures: 30\n", output, StringComparison.Ordinal);
    }

    private sealed class Stub : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly Mode _mode;
        private readonly CancellationTokenSource _stop = new();
        private readonly List<Socket> _held = [];
        private readonly List<string> _clientIds = [];
        private readonly List<string> _userNames = [];
        private readonly List<(string Topic, string Payload)> _publishes = [];

        public IReadOnlyList<(string Topic, string Payload)> Publishes
        {
            get
            {
                lock (_clientIds)
                {
                    return [.. _publishes];
                }
            }
        }
        private readonly Task _loop;

        public Stub(Mode mode)
        {
            _mode = mode;
            _listener.Start(1024);
            EndPoint = _listener.LocalEndpoint;
            _loop = Task.Run(AcceptLoopAsync);
        }

        public EndPoint EndPoint { get; }

        public IReadOnlyList<string> ClientIds
        {
            get
            {
                lock (_clientIds)
                {
                    return [.. _clientIds];
                }
            }
        }

        public IReadOnlyList<string> UserNames
        {
            get
            {
                lock (_clientIds)
                {
                    return [.. _userNames];
                }
            }
        }

        public async Task WaitForConnectsAsync(int count)
        {
            var deadline = Stopwatch.StartNew();
            while (ClientIds.Count < count)
            {
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), "the stub never saw the CONNECT");
                await Task.Delay(10);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            try
            {
                await _loop;
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }

            lock (_held)
            {
                _held.ForEach(s => s.Dispose());
            }

            _stop.Dispose();
        }

        private async Task AcceptLoopAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                var socket = await _listener.AcceptSocketAsync(_stop.Token);
                // Each answer goes at once: with Nagle's algorithm a late PUBACK would wait for the client's delayed ACK.
                socket.NoDelay = true;
                lock (_held)
                {
                    _held.Add(socket);
                }

                _ = Task.Run(() => ServeAsync(socket));
            }
        }

        private async Task ServeAsync(Socket socket)
        {
            try
            {
                var packet = await NativeTool.ReadPacketAsync(socket);
                // Variable header of 3.1.1 CONNECT: protocol name (2 + 4), level, flags, keep-alive = 10 bytes; then the client id.
                var idLength = (packet[10] << 8) | packet[11];
                lock (_clientIds)
                {
                    _clientIds.Add(System.Text.Encoding.UTF8.GetString(packet, 12, idLength));
                    // Flags bit 7: a user name follows the client id (no will in these CONNECTs).
                    if ((packet[7] & 0x80) != 0)
                    {
                        var at = 12 + idLength;
                        _userNames.Add(System.Text.Encoding.UTF8.GetString(packet, at + 2, (packet[at] << 8) | packet[at + 1]));
                    }
                }

                switch (_mode)
                {
                    case Mode.Accept:
                        await socket.SendAsync(new byte[] { 0x20, 2, 0, 0 }, SocketFlags.None);
                        break;
                    case Mode.RefuseNotAuthorized:
                        await socket.SendAsync(new byte[] { 0x20, 2, 0, 5 }, SocketFlags.None);
                        socket.Shutdown(SocketShutdown.Both);
                        break;
                    case Mode.CloseAfterConnect:
                        socket.Shutdown(SocketShutdown.Both);
                        socket.Close();
                        break;
                    case Mode.Silent:
                        break;
                    case Mode.AckPublishes or Mode.AckPublishesLate:
                        await socket.SendAsync(new byte[] { 0x20, 2, 0, 0 }, SocketFlags.None);
                        while (true)
                        {
                            var publish = await NativeTool.ReadPacketAsync(socket);
                            var topicLength = (publish[0] << 8) | publish[1];
                            var id = publish.AsSpan(2 + topicLength, 2).ToArray();
                            lock (_clientIds)
                            {
                                _publishes.Add((System.Text.Encoding.UTF8.GetString(publish, 2, topicLength),
                                    System.Text.Encoding.UTF8.GetString(publish, 4 + topicLength, publish.Length - 4 - topicLength)));
                            }

                            if (_mode == Mode.AckPublishesLate)
                            {
                                // A slow server is what this mode is: each PUBACK waits 10 ms after its PUBLISH was read.
                                await Task.Delay(10);
                            }

                            await socket.SendAsync(new byte[] { 0x40, 2, id[0], id[1] }, SocketFlags.None);
                        }
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
            {
            }
        }
    }
}
