using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Perf.Load.Tests;

/// <summary>
/// load/native/rpc.c (issue 12 row 7), built with gcc and run against <see cref="RpcStub"/>: a loopback REST + MQTT
/// pair that does what the server does for a two-way RPC (REST call in, PUBLISH to the device's subscription,
/// the device's answer back as the REST answer), so the whole round trip goes through the tool's real sockets.
/// </summary>
public sealed class NativeRpcTests : IDisposable
{
    private const string Jwt = "test.jwt.token";
    private readonly string _ids = Path.Combine(Path.GetTempPath(), $"rpc-ids-{Guid.NewGuid():N}.txt");

    public NativeRpcTests() => File.WriteAllLines(_ids, Enumerable.Range(0, 64).Select(i => $"dev-{i}"));

    public void Dispose() => File.Delete(_ids);

    private Task<(int ExitCode, string Output, string Error)> RunAsync(RpcStub stub, int devices, int concurrency, double seconds, double rate, string? ids = null) =>
        NativeTool.BuildAndRunAsync("rpc", "127.0.0.1", stub.HttpPort.ToString(CultureInfo.InvariantCulture), stub.MqttPort.ToString(CultureInfo.InvariantCulture),
            devices.ToString(CultureInfo.InvariantCulture), concurrency.ToString(CultureInfo.InvariantCulture), seconds.ToString(CultureInfo.InvariantCulture),
            rate.ToString(CultureInfo.InvariantCulture), "token-", Jwt, ids ?? _ids);

    private static long Field(string output, string name) =>
        long.Parse(Regex.Match(output, Regex.Escape(name) + @": (\d+)").Groups[1].Value, CultureInfo.InvariantCulture);

    [Fact]
    public async Task At_full_speed_every_echoed_call_is_a_round_trip_on_the_device_its_worker_owns()
    {
        await using var stub = new RpcStub(RpcStub.Answer.Echo);
        var (exit, output, error) = await RunAsync(stub, devices: 4, concurrency: 8, seconds: 1, rate: 0);
        Assert.True(exit == 0, output + error);
        var roundTrips = Field(output, "round trips");
        Assert.Equal(0, Field(output, "failures"));
        Assert.InRange(roundTrips, 50, long.MaxValue);
        Assert.Equal(roundTrips, Field(output, "sent"));
        Assert.Equal(roundTrips, Field(output, "requests answered by devices"));
        Assert.Matches(@"latency ms: p50 [\d.]+ p90 [\d.]+ p99 [\d.]+ p99\.9 [\d.]+ max [\d.]+", output);
        Assert.Matches(@"client CPU us per round trip: [\d.]+", output);

        // Every call the stub saw: distinct seqs, worker w = seq % 8 always on device w % 4, with the JWT.
        var calls = stub.Calls;
        Assert.Equal(roundTrips, calls.Count);
        Assert.Equal(calls.Count, calls.Select(c => c.Seq).Distinct().Count());
        Assert.All(calls, c => Assert.Equal($"dev-{c.Seq % 8 % 4}", c.DeviceId));
        Assert.Equal(["token-0", "token-1", "token-2", "token-3"], stub.UserNames.Order(StringComparer.Ordinal));
        Assert.Equal(0, stub.Unauthorized);
        // At most ceil(8 / 4) = 2 calls pending on a device at once.
        Assert.InRange(stub.MostPendingOnOneDevice, 1, 2);
    }

    [Fact]
    public async Task Chunked_answers_are_read_and_counted_like_content_length_ones()
    {
        await using var stub = new RpcStub(RpcStub.Answer.EchoChunked);
        var (exit, output, error) = await RunAsync(stub, devices: 2, concurrency: 2, seconds: 1, rate: 0);
        Assert.True(exit == 0, output + error);
        Assert.InRange(Field(output, "round trips"), 20, long.MaxValue);
        Assert.Equal(stub.Calls.Count, Field(output, "round trips"));
    }

    [Fact]
    public async Task A_wrong_echo_is_a_failure_and_the_first_one_is_shown()
    {
        await using var stub = new RpcStub(RpcStub.Answer.WrongEcho);
        var (exit, output, error) = await RunAsync(stub, devices: 1, concurrency: 2, seconds: 0.5, rate: 0);
        Assert.Equal(1, exit);
        Assert.Equal(0, Field(output, "round trips"));
        Assert.Equal(stub.Calls.Count, Field(output, "failures"));
        Assert.InRange(stub.Calls.Count, 2, long.MaxValue);
        Assert.Contains("first failure: wrong echo: HTTP 200: {\"method\":\"echo\",\"params\":{\"seq\":-1}}", error, StringComparison.Ordinal);
        Assert.DoesNotMatch("latency ms", output);
    }

    [Fact]
    public async Task Non_200_answers_are_failures_and_the_other_calls_still_count()
    {
        // Every third call is refused with the server's chunked 409 JSON error.
        await using var stub = new RpcStub(RpcStub.Answer.RefuseEveryThird);
        var (exit, output, error) = await RunAsync(stub, devices: 2, concurrency: 4, seconds: 1, rate: 0);
        Assert.Equal(1, exit);
        Assert.Equal(stub.Refused, Field(output, "failures"));
        Assert.Equal(stub.Calls.Count - stub.Refused, Field(output, "round trips"));
        Assert.InRange(stub.Refused, 10, long.MaxValue);
        Assert.Contains("first failure: not 200: HTTP 409: {\"status\":409,\"message\":\"Too many pending RPC requests for the device\"", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_connection_the_server_closes_fails_its_call_and_the_worker_reconnects()
    {
        await using var stub = new RpcStub(RpcStub.Answer.CloseEveryFifth);
        var (exit, output, error) = await RunAsync(stub, devices: 1, concurrency: 2, seconds: 1, rate: 0);
        Assert.Equal(1, exit);
        Assert.Equal(stub.Refused, Field(output, "failures"));
        Assert.InRange(Field(output, "round trips"), 4 * stub.Refused, 4 * stub.Refused + 4); // calls 5, 10, 15, ... were cut
        Assert.InRange(stub.Refused, 3, long.MaxValue);
        Assert.Contains("connection closed by the server", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Paced_calls_follow_the_rate_with_the_workers_phases_spread_over_the_period()
    {
        // 20 workers at 100 calls/s in all: 5/s each. Spread phases put one call every 10 ms; without them the
        // 20 workers would fire together every 200 ms (most gaps between calls near 0).
        await using var stub = new RpcStub(RpcStub.Answer.Echo);
        var (exit, output, error) = await RunAsync(stub, devices: 4, concurrency: 20, seconds: 2, rate: 100);
        Assert.True(exit == 0, output + error);
        Assert.InRange(Field(output, "round trips"), 170, 200); // 200 due within the 2 s
        Assert.Matches(@"round trips/s: (9\d|10\d)\n", output);
        var arrivals = stub.Calls.Select(c => c.ArrivedMs).Order().ToArray();
        var gaps = arrivals.Zip(arrivals.Skip(1), (a, b) => b - a).Order().ToArray();
        Assert.InRange(gaps[gaps.Length / 2], 4.0, 16.0);
        // Seqs are k * 20 + w: every seq from 0 up was called once.
        var bySeq = stub.Calls.OrderBy(c => c.Seq).Select(c => c.Seq).ToArray();
        Assert.Equal(Enumerable.Range(0, bySeq.Length).Select(i => (long)i), bySeq);
    }

    [Fact]
    public async Task Too_few_device_ids_is_a_usage_error()
    {
        await using var stub = new RpcStub(RpcStub.Answer.Echo);
        var few = Path.Combine(Path.GetTempPath(), $"rpc-ids-{Guid.NewGuid():N}.txt");
        await File.WriteAllLinesAsync(few, ["dev-0", "dev-1"]);
        try
        {
            var (exit, _, error) = await RunAsync(stub, devices: 3, concurrency: 3, seconds: 1, rate: 0, few);
            Assert.Equal(2, exit);
            Assert.Contains("holds 2 device ids, 3 needed", error, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(few);
        }
    }

    /// <summary>
    /// REST side: keep-alive HTTP/1.1, <c>POST /api/plugins/rpc/twoway/dev-i</c> with <c>X-Authorization: Bearer</c>
    /// and a Content-Length JSON body. MQTT side: CONNECT (user name token-i is device dev-i), SUBSCRIBE, then the
    /// call goes to the device as <c>{"method":..,"params":..}</c> on <c>v1/devices/me/rpc/request/{n}</c> and its
    /// PUBLISH on <c>v1/devices/me/rpc/response/{n}</c> becomes the REST answer, shaped by <see cref="Answer"/>.
    /// </summary>
    private sealed class RpcStub : IAsyncDisposable
    {
        public enum Answer
        {
            Echo,
            EchoChunked,
            WrongEcho,
            RefuseEveryThird,
            CloseEveryFifth,
        }

        public sealed record Call(string DeviceId, long Seq, double ArrivedMs);

        private readonly Answer _answer;
        private readonly TcpListener _http = new(IPAddress.Loopback, 0);
        private readonly TcpListener _mqtt = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private readonly ConcurrentDictionary<string, Device> _devices = new();
        private readonly ConcurrentDictionary<int, TaskCompletionSource<byte[]>> _pending = new();
        private readonly ConcurrentQueue<Call> _calls = new();
        private readonly ConcurrentBag<Socket> _sockets = [];
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private readonly Task _acceptHttp, _acceptMqtt;
        private int _requestId, _callCount, _refused, _unauthorized, _mostPending;

        public RpcStub(Answer answer)
        {
            _answer = answer;
            _http.Start(256);
            _mqtt.Start(256);
            _acceptHttp = Task.Run(() => AcceptAsync(_http, ServeHttpAsync));
            _acceptMqtt = Task.Run(() => AcceptAsync(_mqtt, ServeMqttAsync));
        }

        public int HttpPort => ((IPEndPoint)_http.LocalEndpoint).Port;

        public int MqttPort => ((IPEndPoint)_mqtt.LocalEndpoint).Port;

        public IReadOnlyList<Call> Calls => [.. _calls];

        public IReadOnlyList<string> UserNames => [.. _devices.Values.Select(d => d.UserName)];

        public long Refused => Volatile.Read(ref _refused);

        public int Unauthorized => Volatile.Read(ref _unauthorized);

        public int MostPendingOnOneDevice => Volatile.Read(ref _mostPending);

        private sealed class Device(Socket socket, string userName)
        {
            public Socket Socket { get; } = socket;
            public string UserName { get; } = userName;
            public SemaphoreSlim WriteLock { get; } = new(1, 1);
            public int Pending;
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _http.Stop();
            _mqtt.Stop();
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }

            try
            {
                await Task.WhenAll(_acceptHttp, _acceptMqtt);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }

            _stop.Dispose();
        }

        private async Task AcceptAsync(TcpListener listener, Func<Socket, Task> serve)
        {
            while (!_stop.IsCancellationRequested)
            {
                var socket = await listener.AcceptSocketAsync(_stop.Token);
                _sockets.Add(socket);
                _ = Task.Run(async () =>
                {
                    try
                    {
                        await serve(socket);
                    }
                    catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException or OperationCanceledException)
                    {
                    }
                });
            }
        }

        private async Task ServeMqttAsync(Socket socket)
        {
            var connect = await NativeTool.ReadPacketAsync(socket);
            var idLength = (connect[10] << 8) | connect[11];
            var at = 12 + idLength;
            var userName = Encoding.UTF8.GetString(connect, at + 2, (connect[at] << 8) | connect[at + 1]);
            await socket.SendAsync(new byte[] { 0x20, 2, 0, 0 }, SocketFlags.None);
            var subscribe = await NativeTool.ReadPacketAsync(socket);
            var filter = Encoding.UTF8.GetString(subscribe, 4, (subscribe[2] << 8) | subscribe[3]);
            Assert.Equal("v1/devices/me/rpc/request/+", filter);
            // Known before the SUBACK: the client starts its calls as soon as it has it, and a call for a device not
            // yet registered would end its HTTP connection's serve task (one call never answered, seen once in CI).
            _devices["dev-" + userName["token-".Length..]] = new Device(socket, userName);
            await socket.SendAsync(new byte[] { 0x90, 3, subscribe[0], subscribe[1], 0 }, SocketFlags.None);
            while (true)
            {
                var publish = await NativeTool.ReadPacketAsync(socket);
                var topic = Encoding.UTF8.GetString(publish, 2, (publish[0] << 8) | publish[1]);
                const string prefix = "v1/devices/me/rpc/response/";
                Assert.StartsWith(prefix, topic, StringComparison.Ordinal);
                if (_pending.TryRemove(int.Parse(topic[prefix.Length..], CultureInfo.InvariantCulture), out var waiter))
                {
                    waiter.TrySetResult(publish[(2 + topic.Length)..]);
                }
            }
        }

        private async Task ServeHttpAsync(Socket socket)
        {
            var buffer = new byte[64 * 1024];
            var filled = 0;
            while (true)
            {
                int end;
                while ((end = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8)) < 0)
                {
                    var n = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None);
                    if (n == 0)
                    {
                        return;
                    }

                    filled += n;
                }

                var head = Encoding.ASCII.GetString(buffer, 0, end).Split("\r\n");
                var headers = head.Skip(1).Select(h => h.Split(':', 2)).ToDictionary(h => h[0].Trim(), h => h[1].Trim(), StringComparer.OrdinalIgnoreCase);
                var length = int.Parse(headers["Content-Length"], CultureInfo.InvariantCulture);
                while (filled < end + 4 + length)
                {
                    var n = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None);
                    if (n == 0)
                    {
                        return;
                    }

                    filled += n;
                }

                var body = JsonNode.Parse(buffer.AsSpan(end + 4, length))!.AsObject();
                Buffer.BlockCopy(buffer, end + 4 + length, buffer, 0, filled - end - 4 - length);
                filled -= end + 4 + length;

                const string path = "POST /api/plugins/rpc/twoway/";
                Assert.StartsWith(path, head[0], StringComparison.Ordinal);
                var deviceId = head[0][path.Length..head[0].IndexOf(" HTTP/1.1", StringComparison.Ordinal)];
                if (!headers.TryGetValue("X-Authorization", out var auth) || auth != "Bearer " + Jwt || headers["Content-Type"] != "application/json")
                {
                    Interlocked.Increment(ref _unauthorized);
                    await SendAsync(socket, 401, "{\"status\":401}", chunked: false);
                    continue;
                }

                var seq = body["params"]!["seq"]!.GetValue<long>();
                _calls.Enqueue(new Call(deviceId, seq, _clock.Elapsed.TotalMilliseconds));
                var number = Interlocked.Increment(ref _callCount);
                if (_answer == Answer.RefuseEveryThird && number % 3 == 0)
                {
                    Interlocked.Increment(ref _refused);
                    await SendAsync(socket, 409, "{\"status\":409,\"message\":\"Too many pending RPC requests for the device\",\"errorCode\":31}", chunked: true);
                    continue;
                }

                if (_answer == Answer.CloseEveryFifth && number % 5 == 0)
                {
                    Interlocked.Increment(ref _refused);
                    socket.Shutdown(SocketShutdown.Both);
                    socket.Close();
                    return;
                }

                var device = _devices[deviceId];
                var pending = Interlocked.Increment(ref device.Pending);
                InterlockedMax(ref _mostPending, pending);
                var id = Interlocked.Increment(ref _requestId);
                var waiter = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
                _pending[id] = waiter;
                var request = Encoding.UTF8.GetBytes(new JsonObject { ["method"] = body["method"]!.GetValue<string>(), ["params"] = body["params"]!.DeepClone() }.ToJsonString());
                await device.WriteLock.WaitAsync();
                try
                {
                    await device.Socket.SendAsync(Publish("v1/devices/me/rpc/request/" + id.ToString(CultureInfo.InvariantCulture), request), SocketFlags.None);
                }
                finally
                {
                    device.WriteLock.Release();
                }

                var response = await waiter.Task.WaitAsync(TimeSpan.FromSeconds(30));
                Interlocked.Decrement(ref device.Pending);
                var text = _answer == Answer.WrongEcho ? "{\"method\":\"echo\",\"params\":{\"seq\":-1}}" : Encoding.UTF8.GetString(response);
                await SendAsync(socket, 200, text, chunked: _answer == Answer.EchoChunked);
            }
        }

        private static void InterlockedMax(ref int target, int value)
        {
            int seen;
            while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
            {
            }
        }

        private static async Task SendAsync(Socket socket, int status, string body, bool chunked)
        {
            var reason = status switch { 200 => "OK", 401 => "Unauthorized", _ => "Conflict" };
            string message;
            if (chunked)
            {
                // Two chunks (the split falls inside the JSON), as Kestrel writes a body of unknown length.
                var half = body.Length / 2;
                message = $"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n" +
                    $"{half:x}\r\n{body[..half]}\r\n{body.Length - half:x}\r\n{body[half..]}\r\n0\r\n\r\n";
            }
            else
            {
                message = $"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\n\r\n{body}";
            }

            await socket.SendAsync(Encoding.UTF8.GetBytes(message), SocketFlags.None);
        }

        private static byte[] Publish(string topic, byte[] payload)
        {
            var remaining = 2 + topic.Length + payload.Length;
            var packet = new List<byte> { 0x30 };
            do
            {
                var b = (byte)(remaining & 0x7F);
                remaining >>= 7;
                packet.Add(remaining > 0 ? (byte)(b | 0x80) : b);
            }
            while (remaining > 0);

            packet.Add((byte)(topic.Length >> 8));
            packet.Add((byte)topic.Length);
            packet.AddRange(Encoding.UTF8.GetBytes(topic));
            packet.AddRange(payload);
            return [.. packet];
        }
    }
}
