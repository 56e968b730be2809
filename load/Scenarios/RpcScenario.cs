using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Unicode;
using Perf.Load.Wire;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>rpc</c>: REST two-way RPC round trips (REST caller -> server -> MQTT device -> server -> REST caller).
/// The tool provisions <c>--devices</c> devices, connects each as an MQTT device subscribed to
/// <c>v1/devices/me/rpc/request/+</c> that answers every request on <c>v1/devices/me/rpc/response/{id}</c>
/// with the request itself, and keeps <c>--concurrency</c> REST calls in flight (or paces them to <c>--rate</c>).
/// A round trip counts as acknowledged when the REST answer is 200 and echoes the call's sequence number.
/// </summary>
public static class RpcScenario
{
    public const string Help = """
          rpc            --devices 10 --concurrency 16 (REST calls in flight) [--rate round trips/s, 0 = max]
                         [--rpc-version v1|v2] [--rpc-timeout 10000 (ms, in the request body)]
                         [--port 1883 (MQTT)] --api http://127.0.0.1:8080 --user tenant@example.com --password tenant
                         devices load-0..load-N-1 are created (or reused) over REST with tokens --token-prefix+i
        """;

    /// <summary>The server's default MaxPendingRpcPerDevice: a device with more calls pending gets 409 (v1) / 504 (v2).</summary>
    public const int ServerPendingLimit = 10;

    /// <summary>Default <c>--devices</c>: at least 10, and at most 8 calls in flight per device (below the server's limit of 10).</summary>
    public static int DefaultDevices(int concurrency) => Math.Max(10, (concurrency + 7) / 8);

    /// <summary>The device worker <paramref name="worker"/> calls: workers are spread evenly and each stays on one device.</summary>
    public static int DeviceOf(int worker, int devices) => worker % devices;

    /// <summary>Most calls in flight on one device when <paramref name="concurrency"/> workers are spread by <see cref="DeviceOf"/>.</summary>
    public static int CallsPerDevice(int concurrency, int devices) => (concurrency + devices - 1) / devices;

    private const string RequestFilter = "v1/devices/me/rpc/request/+";
    private static ReadOnlySpan<byte> ResponsePrefix => "v1/devices/me/rpc/response/"u8;

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var common = CommonOptions.Read(o, 1883);
        var concurrency = o.Int("concurrency", 16, 1, 100_000);
        var deviceCount = o.Int("devices", DefaultDevices(concurrency), 1, 100_000);
        var rate = o.Double("rate", 0, 0);
        var version = o.String("rpc-version", "v1");
        var rpcTimeout = o.Int("rpc-timeout", 10_000, 1, 600_000);
        var api = o.String("api", "http://127.0.0.1:8080");
        var user = o.String("user", "tenant@example.com");
        var password = o.String("password", "tenant");
        var prefix = o.String("token-prefix", "load-token-");
        o.ThrowIfUnused();
        if (CallsPerDevice(concurrency, deviceCount) > ServerPendingLimit)
        {
            Console.Error.WriteLine($"warning: {concurrency} calls in flight over {deviceCount} devices is up to {CallsPerDevice(concurrency, deviceCount)} pending per device; " +
                $"the server answers 409 beyond {ServerPendingLimit} (use --devices {DefaultDevices(concurrency)} or more).");
        }

        var path = version switch
        {
            "v1" => "api/plugins/rpc/twoway/",
            "v2" => "api/rpc/twoway/",
            _ => throw new OptionsException($"--rpc-version: expected v1 or v2, got '{version}'."),
        };
        if (!Uri.TryCreate(api, UriKind.Absolute, out var apiUri))
        {
            throw new OptionsException($"--api: '{api}' is not an absolute URL.");
        }

        var devices = await Tokens.ProvisionAsync(apiUri, user, password, prefix, deviceCount, cancellation);
        var endPoint = Targets.Resolve(common.Host, common.Port);
        var result = new RunResult { Scenario = "rpc", Target = $"{common.Target} (MQTT), {apiUri.Authority} (REST)", RateName = "round trips/s", LatencyName = "round-trip latency" };
        result.Parameter("devices", deviceCount);
        result.Parameter("concurrency", concurrency);
        result.Parameter("rate", rate == 0 ? "max" : rate);
        result.Parameter("rpc-version", version);
        result.Parameter("duration", common.Duration.TotalSeconds + "s");

        // The simulated devices.
        var pid = Environment.ProcessId;
        var answerers = new DeviceAnswerer?[deviceCount];
        var connectFailures = 0;
        await Parallel.ForAsync(0, deviceCount, new ParallelOptions { MaxDegreeOfParallelism = 64, CancellationToken = cancellation }, async (i, ct) =>
        {
            try
            {
                var socket = await MqttHandshake.ConnectAsync(endPoint, MqttWire.Connect($"load-rpc-{pid}-{i}", devices[i].Token, null, 0), TimeSpan.FromSeconds(10), ct);
                var answerer = new DeviceAnswerer(socket);
                await answerer.SubscribeAsync(ct);
                answerers[i] = answerer;
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or TimeoutException)
            {
                if (Interlocked.Increment(ref connectFailures) == 1)
                {
                    Console.Error.WriteLine($"device {i}: {e.Message}");
                }
            }
        });
        var connected = answerers.Select((a, i) => (Answerer: a, Id: devices[i].Id)).Where(x => x.Answerer is not null).ToArray();
        if (connected.Length == 0)
        {
            Console.Error.WriteLine("No device could connect and subscribe.");
            result.Errors = connectFailures;
            return common.Finish(result) | 1;
        }

        // One HTTP/1.1 keep-alive connection per worker (HttpClient does not pipeline), no proxy, no redirects.
        // Calls go through the handler directly (HttpMessageInvoker): HttpClient's per-call timeout source is not needed,
        // since the server bounds every call by the RPC timeout in its body.
        using var handler = new SocketsHttpHandler
        {
            MaxConnectionsPerServer = concurrency,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            UseProxy = false,
            AllowAutoRedirect = false,
            UseCookies = false,
        };
        using var http = new HttpClient(handler, disposeHandler: false) { BaseAddress = apiUri, Timeout = TimeSpan.FromMilliseconds(rpcTimeout + 5_000) };
        var bearer = "Bearer " + await Tokens.LoginAsync(http, user, password, cancellation);
        using var invoker = new HttpMessageInvoker(handler, disposeHandler: false);
        var mediaType = new MediaTypeHeaderValue("application/json");
        var deviceUris = connected.Select(c => new Uri(apiUri, path + c.Id)).ToArray();

        var workers = Enumerable.Range(0, concurrency).Select(_ => new WorkerCounters()).ToArray();
        var latency = new LatencyRecorder();
        var monitor = new ProgressMonitor(() => workers, "round trips", common.Duration);
        var clock = Stopwatch.StartNew();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        stop.CancelAfter(common.Duration);
        string? firstError = null;
        var statuses = new System.Collections.Concurrent.ConcurrentDictionary<int, int>();

        var tasks = Enumerable.Range(0, concurrency).Select(w => Task.Run(async () =>
        {
            var counters = workers[w];
            var pacer = new Pacer(rate / concurrency, clock, Pacer.PhaseOf(w, concurrency));
            // Worker w always calls the same device, so a device never has more than ceil(concurrency / devices)
            // calls pending (the server refuses more than MaxPendingRpcPerDevice with 409).
            var device = DeviceOf(w, deviceUris.Length);
            var uri = deviceUris[device];
            var body = new byte[256];
            var expected = new byte[32];
            var answer = new byte[1024];
            long call = 0;
            while (!stop.IsCancellationRequested)
            {
                var seq = (call * concurrency) + w;
                call++;
                try
                {
                    await pacer.WaitTurnAsync(1, stop.Token);
                    Utf8.TryWrite(body, CultureInfo.InvariantCulture, $"{{\"method\":\"echo\",\"params\":{{\"seq\":{seq}}},\"timeout\":{rpcTimeout}}}", out var bodyLength);
                    Utf8.TryWrite(expected, CultureInfo.InvariantCulture, $"\"seq\":{seq}}}", out var expectedLength);
                    using var request = new HttpRequestMessage(HttpMethod.Post, uri) { Content = new ReadOnlyMemoryContent(body.AsMemory(0, bodyLength)) };
                    request.Content.Headers.ContentType = mediaType;
                    request.Headers.TryAddWithoutValidation("X-Authorization", bearer);
                    var started = Stopwatch.GetTimestamp();
                    counters.Sent++;
                    // No token on the call: a started round trip runs to its answer (bounded by the RPC timeout).
                    using var response = await invoker.SendAsync(request, CancellationToken.None);
                    var length = await ReadAnswerAsync(response, answer);
                    var elapsedTicks = Stopwatch.GetTimestamp() - started;
                    if (response.IsSuccessStatusCode && answer.AsSpan(0, Math.Min(length, answer.Length)).IndexOf(expected.AsSpan(0, expectedLength)) >= 0)
                    {
                        latency.RecordTicks(w, elapsedTicks);
                        counters.Acked++;
                    }
                    else
                    {
                        statuses.AddOrUpdate((int)response.StatusCode, 1, (_, n) => n + 1);
                        Interlocked.Increment(ref counters.Errors);
                        Interlocked.CompareExchange(ref firstError, $"HTTP {(int)response.StatusCode}: {Encoding.UTF8.GetString(answer, 0, Math.Min(length, answer.Length))}", null);
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    // The pacer's wait was cut off by the end of the run: nothing was sent.
                }
                catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
                {
                    Interlocked.Increment(ref counters.Errors);
                    Interlocked.CompareExchange(ref firstError, e.Message, null);
                    await Task.Delay(10, CancellationToken.None);
                }
            }
        }, CancellationToken.None)).ToArray();

        await Task.WhenAll(tasks);
        var elapsed = clock.Elapsed.TotalSeconds;
        await monitor.DisposeAsync();
        var totals = monitor.Totals();
        foreach (var (answerer, _) in connected)
        {
            answerer!.Close();
        }

        if (firstError is not null)
        {
            Console.Error.WriteLine($"first error: {firstError}");
        }

        result.DurationSeconds = elapsed;
        result.Sent = totals.Sent;
        result.Acked = totals.Acked;
        result.Errors = totals.Errors + connectFailures;
        result.Rate = totals.Acked / elapsed;
        result.Latency = latency.Merge();
        result.Series = monitor.Series;
        result.AddExtra("devices connected", connected.Length);
        result.AddExtra("device connect failures", connectFailures);
        result.AddExtra("requests answered by devices", connected.Sum(c => c.Answerer!.Answered));
        if (!statuses.IsEmpty)
        {
            result.AddExtra("failed statuses", string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key}: {s.Value}")));
        }

        return common.Finish(result);
    }

    /// <summary>Reads the answer body into <paramref name="buffer"/>; returns its full length (bytes past the buffer are read and dropped).</summary>
    private static async ValueTask<int> ReadAnswerAsync(HttpResponseMessage response, byte[] buffer)
    {
        await using var stream = await response.Content.ReadAsStreamAsync(CancellationToken.None);
        var total = 0;
        while (true)
        {
            var n = total < buffer.Length
                ? await stream.ReadAsync(buffer.AsMemory(total), CancellationToken.None)
                : await stream.ReadAsync(new byte[4096], CancellationToken.None);
            if (n == 0)
            {
                return total;
            }

            total += n;
        }
    }

    /// <summary>One simulated device: answers every RPC request with the request's own payload.</summary>
    private sealed class DeviceAnswerer(Socket socket)
    {
        private readonly TaskCompletionSource _subscribed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private Task? _loop;
        private volatile bool _closing;
        private long _answered;

        public long Answered => Interlocked.Read(ref _answered);

        public async Task SubscribeAsync(CancellationToken cancellation)
        {
            _loop = Task.Run(ReceiveLoopAsync, CancellationToken.None);
            await socket.SendAsync(MqttWire.Subscribe(1, RequestFilter, 0), SocketFlags.None, cancellation);
            await _subscribed.Task.WaitAsync(TimeSpan.FromSeconds(10), cancellation);
        }

        private async Task ReceiveLoopAsync()
        {
            var buffer = new byte[64 * 1024];
            var filled = 0;
            try
            {
                while (true)
                {
                    var n = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None);
                    if (n == 0)
                    {
                        break;
                    }

                    filled += n;
                    var offset = 0;
                    while (MqttWire.TryReadFixedHeader(buffer.AsSpan(offset, filled - offset), out var type, out var header, out var remaining)
                           && filled - offset >= header + remaining)
                    {
                        Handle(buffer.AsSpan(offset, header + remaining), type, header);
                        offset += header + remaining;
                    }

                    // Every answer to this read's requests in one send (one syscall, one TCP segment when small).
                    if (_outLength > 0)
                    {
                        await socket.SendAsync(_out.AsMemory(0, _outLength), SocketFlags.None);
                        _outLength = 0;
                    }

                    filled -= offset;
                    if (filled > 0)
                    {
                        Buffer.BlockCopy(buffer, offset, buffer, 0, filled);
                    }

                    if (filled == buffer.Length)
                    {
                        Array.Resize(ref buffer, buffer.Length * 2);
                    }
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidDataException)
            {
                // Closed.
            }

            if (!_closing)
            {
                _subscribed.TrySetException(new IOException("Connection closed by the server."));
                Console.Error.WriteLine("rpc device connection lost");
            }
        }

        /// <summary>Answers queued by <see cref="Handle"/> for the current read, sent together after it.</summary>
        private byte[] _out = new byte[64 * 1024];
        private int _outLength;

        private Span<byte> Reserve(int size)
        {
            if (_out.Length - _outLength < size)
            {
                Array.Resize(ref _out, Math.Max(_out.Length * 2, _outLength + size));
            }

            return _out.AsSpan(_outLength, size);
        }

        private void Handle(ReadOnlySpan<byte> packet, byte type, int header)
        {
            if (type == MqttWire.SubAckType)
            {
                if (packet.Length >= header + 3 && packet[header + 2] == 0x80)
                {
                    _subscribed.TrySetException(new IOException("SUBACK refused the RPC request subscription."));
                }
                else
                {
                    _subscribed.TrySetResult();
                }

                return;
            }

            if (type != MqttWire.PublishType || !MqttWire.TryParsePublish(packet, header, out var topic, out var packetId, out var payload))
            {
                return;
            }

            if (packetId != 0)
            {
                MqttWire.WritePubAck(Reserve(MqttWire.PubAckLength), packetId);
                _outLength += MqttWire.PubAckLength;
            }

            var requestId = topic[(topic.LastIndexOf((byte)'/') + 1)..];
            var size = MqttWire.PublishQos0Size(ResponsePrefix.Length + requestId.Length, payload.Length);
            _outLength += MqttWire.WritePublishQos0(Reserve(size), ResponsePrefix, requestId, payload);
            Interlocked.Increment(ref _answered);
        }

        public void Close()
        {
            _closing = true;
            try
            {
                socket.Send(MqttWire.Disconnect);
                socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Already gone.
            }

            socket.Dispose();
        }
    }
}
