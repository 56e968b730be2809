using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using Perf.Api.Edge.Protos;
using Perf.Api.Edge.Protos.Transport;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>edge</c>: <c>--edges</c> ThingsBoard-Edge-protocol clients (<c>edge.EdgeRpcService/handleMsgs</c>, one
/// gRPC channel each) connect with routing key + secret, full-sync (acknowledging every downlink, echoing
/// RPC requests), then uplink telemetry batches of <c>--batch</c> events for the device assigned to them,
/// <c>--inflight</c> UplinkMsgs awaiting their UplinkResponseMsg per edge. Edges and devices are created over
/// REST (<c>--api</c>), or one existing edge is used with <c>--routing-key --secret [--device]</c>.
/// The client is compiled from the server's .proto files (linked, no project reference).
/// </summary>
public static class EdgeScenario
{
    public const string Help = """
          edge           --edges 1 --batch 50 --keys 1 --inflight 1 [--port 7070 (EDGES_RPC_PORT)] [--timeout 10s]
                         [--api http://127.0.0.1:8080 --user tenant@example.com --password tenant: create edge i + device per edge]
                         [--routing-key K --secret S [--device UUID]: use one existing edge (--edges 1)]
        """;

    /// <summary>What <see cref="RunAsync"/> reads from the command line; parsed separately so tests can check it.</summary>
    public sealed record Settings(CommonOptions Common, int Edges, int Batch, int Keys, int Inflight, TimeSpan Timeout,
        string Api, string User, string Password, string? RoutingKey, string? Secret, Guid? Device)
    {
        public static Settings Read(Options o)
        {
            var common = CommonOptions.Read(o, 7070);
            var edges = o.Int("edges", 1, 1, 10_000);
            var batch = o.Int("batch", 50, 1, 100_000);
            var keys = o.Int("keys", 1, 1, 1_000);
            var inflight = o.Int("inflight", 1, 1, 1_000);
            var timeout = o.Duration("timeout", TimeSpan.FromSeconds(10));
            var api = o.String("api", "http://127.0.0.1:8080");
            var user = o.String("user", "tenant@example.com");
            var password = o.String("password", "tenant");
            var routingKey = o.StringOrNull("routing-key");
            var secret = o.StringOrNull("secret");
            var deviceText = o.StringOrNull("device");
            if ((routingKey is null) != (secret is null))
            {
                throw new OptionsException("--routing-key and --secret go together.");
            }

            if (routingKey is not null && edges != 1)
            {
                throw new OptionsException("--routing-key/--secret name one edge: use --edges 1.");
            }

            if (deviceText is not null && routingKey is null)
            {
                throw new OptionsException("--device needs --routing-key and --secret (edges created over REST get their own device).");
            }

            Guid? device = null;
            if (deviceText is not null)
            {
                device = Guid.TryParse(deviceText, out var id) ? id : throw new OptionsException($"--device: '{deviceText}' is not a UUID.");
            }

            if (routingKey is null && !Uri.TryCreate(api, UriKind.Absolute, out _))
            {
                throw new OptionsException($"--api: '{api}' is not an absolute URL.");
            }

            if (timeout <= TimeSpan.Zero)
            {
                throw new OptionsException("--timeout must be positive.");
            }

            return new Settings(common, edges, batch, keys, inflight, timeout, api, user, password, routingKey, secret, device);
        }
    }

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var s = Settings.Read(o);
        o.ThrowIfUnused();
        var common = s.Common;

        var result = new RunResult { Scenario = "edge", Target = common.Target, RateName = "acked events/s", LatencyName = "UplinkResponse latency" };
        result.Parameter("edges", s.Edges);
        result.Parameter("batch", s.Batch);
        result.Parameter("keys", s.Keys);
        result.Parameter("inflight", s.Inflight);
        result.Parameter("duration", common.Duration.TotalSeconds + "s");

        var credentials = s.RoutingKey is not null
            ? [(s.RoutingKey, s.Secret!, s.Device)]
            : await SetupAsync(new Uri(s.Api), s.User, s.Password, s.Edges, cancellation);

        var address = new Uri($"http://{(common.Host.Contains(':', StringComparison.Ordinal) ? "[" + common.Host + "]" : common.Host)}:{common.Port}");
        var edges = new EdgeConnection[credentials.Length];
        var connectFailures = 0;
        await Parallel.ForAsync(0, credentials.Length, new ParallelOptions { MaxDegreeOfParallelism = 32, CancellationToken = cancellation }, async (i, ct) =>
        {
            var (key, secret, device) = credentials[i];
            var edge = new EdgeConnection(address, s.Keys);
            try
            {
                await edge.ConnectAndSyncAsync(key, secret, device, ct);
                edges[i] = edge;
            }
            catch (Exception e) when (e is RpcException or TimeoutException or InvalidOperationException or IOException or HttpRequestException)
            {
                Interlocked.Increment(ref connectFailures);
                Console.Error.WriteLine($"edge {i} ({key}): {e.Message}");
                await edge.DisposeAsync();
            }
        });
        var connected = edges.Where(e => e is not null).ToArray();
        if (connected.Length == 0)
        {
            Console.Error.WriteLine("No edge could connect.");
            result.Errors = connectFailures;
            return common.Finish(result) | 1;
        }

        var latency = new LatencyRecorder();
        var monitor = new ProgressMonitor(() => connected.Select(e => e.Counters), "acked events", common.Duration);
        var clock = Stopwatch.StartNew();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        stop.CancelAfter(common.Duration);
        // Every event of the run gets its own timestamp (one shared counter from now - 10^9 ms), so the server
        // keeps each as a history point and the stored count can be checked against the acked count.
        var clockTs = new StrongBox<long>(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 1_000_000_000);
        var workers = connected.SelectMany((edge, e) => Enumerable.Range(0, s.Inflight).Select(_ =>
            Task.Run(() => edge.UplinkLoopAsync(e, s.Batch, s.Timeout, latency, clockTs, stop.Token), CancellationToken.None))).ToArray();
        await Task.WhenAll(workers);
        var elapsed = clock.Elapsed.TotalSeconds;
        await monitor.DisposeAsync();
        var totals = monitor.Totals();
        var firstError = connected.Select(e => e.FirstError).FirstOrDefault(e => e is not null);
        if (firstError is not null)
        {
            Console.Error.WriteLine($"first error: {firstError}");
        }

        foreach (var edge in connected)
        {
            await edge.DisposeAsync();
        }

        result.DurationSeconds = elapsed;
        result.Sent = totals.Sent;
        result.Acked = totals.Acked;
        result.Errors = totals.Errors + connectFailures;
        result.Rate = totals.Acked / elapsed;
        result.Latency = latency.Merge();
        result.Series = monitor.Series;
        result.AddExtra("edges connected", connected.Length);
        result.AddExtra("uplinks acked", result.Latency.TotalCount);
        result.AddExtra("entries/s (events x keys)", Math.Round(totals.Acked * (double)s.Keys / elapsed));
        return common.Finish(result);
    }

    /// <summary>Creates edge <c>load-edge-{run}-i</c> and device <c>load-edge-{run}-i-device</c> per edge and assigns the device.</summary>
    private static async Task<(string RoutingKey, string Secret, Guid? Device)[]> SetupAsync(Uri api, string user, string password, int count, CancellationToken cancellation)
    {
        using var http = new HttpClient { BaseAddress = api, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Add("X-Authorization", "Bearer " + await Tokens.LoginAsync(http, user, password, cancellation));
        var run = Guid.NewGuid().ToString("N")[..8];
        var edges = new (string, string, Guid?)[count];

        async Task<JsonElement> PostAsync(string path, Action<Utf8JsonWriter> body, CancellationToken ct)
        {
            using var content = Tokens.Json(body);
            using var response = await http.PostAsync(path, content, ct);
            var text = await response.Content.ReadAsStringAsync(ct);
            if (!response.IsSuccessStatusCode)
            {
                throw new HttpRequestException($"POST {path}: HTTP {(int)response.StatusCode} {text}");
            }

            using var document = JsonDocument.Parse(text.Length == 0 ? "{}" : text);
            return document.RootElement.Clone();
        }

        static string Id(JsonElement entity) => entity.GetProperty("id").GetProperty("id").GetString() ?? throw new HttpRequestException("entity without id");

        await Parallel.ForAsync(0, count, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellation }, async (i, ct) =>
        {
            var name = $"load-edge-{run}-{i}";
            var edge = await PostAsync("api/edge", w =>
            {
                w.WriteString("name", name);
                w.WriteString("type", "load");
                w.WriteString("routingKey", name);
                w.WriteString("secret", "secret-" + name);
            }, ct);
            var device = await PostAsync("api/device", w =>
            {
                w.WriteString("name", name + "-device");
                w.WriteString("type", "load");
            }, ct);
            await PostAsync($"api/edge/{Id(edge)}/device/{Id(device)}", _ => { }, ct);
            edges[i] = (edge.GetProperty("routingKey").GetString()!, edge.GetProperty("secret").GetString()!, Guid.Parse(Id(device)));
        });
        Console.Error.WriteLine($"created {count} edges with one device each (load-edge-{run}-i)");
        return edges;
    }

    /// <summary>Splits a UUID into the protocol's most/least significant halves.</summary>
    public static (long Msb, long Lsb) Split(Guid id)
    {
        Span<byte> bytes = stackalloc byte[16];
        id.TryWriteBytes(bytes, bigEndian: true, out _);
        return (System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(bytes), System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(bytes[8..]));
    }

    /// <summary>One edge: its gRPC channel and bidirectional call, the downlink reader and the pending uplinks.</summary>
    private sealed class EdgeConnection : IAsyncDisposable
    {
        private readonly GrpcChannel _channel;
        private readonly AsyncDuplexStreamingCall<RequestMsg, ResponseMsg> _call;
        private readonly SemaphoreSlim _writeLock = new(1, 1);
        private readonly TaskCompletionSource<ConnectResponseMsg> _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly ConcurrentDictionary<int, TaskCompletionSource<bool>> _pending = new();
        private readonly ConcurrentQueue<(long Msb, long Lsb)> _devices = new();
        private readonly int _keys;
        private Task _reader = Task.CompletedTask;
        private int _nextUplinkId;
        private (long Msb, long Lsb) _target;
        private string? _firstError;

        public EdgeConnection(Uri address, int keys)
        {
            _keys = keys;
            _channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { MaxReceiveMessageSize = 4 << 20 });
            _call = new EdgeRpcService.EdgeRpcServiceClient(_channel).handleMsgs();
        }

        public WorkerCounters Counters { get; } = new();

        public string? FirstError => Volatile.Read(ref _firstError);

        public async Task ConnectAndSyncAsync(string routingKey, string secret, Guid? device, CancellationToken cancellation)
        {
            _reader = Task.Run(ReadLoopAsync, CancellationToken.None);
            await SendAsync(new RequestMsg
            {
                MsgType = RequestMsgType.ConnectRpcMessage,
                ConnectRequestMsg = new ConnectRequestMsg
                {
                    EdgeRoutingKey = routingKey,
                    EdgeSecret = secret,
                    EdgeVersion = EdgeVersion.VLatest,
                    MaxInboundMessageSize = 4 << 20,
                },
            });
            var accepted = await _connected.Task.WaitAsync(TimeSpan.FromSeconds(10), cancellation);
            if (accepted.ResponseCode != ConnectResponseCode.Accepted)
            {
                throw new InvalidOperationException($"connect: {accepted.ResponseCode} {accepted.ErrorMsg}");
            }

            await SendAsync(new RequestMsg { MsgType = RequestMsgType.SyncRequestRpcMessage, SyncRequestMsg = new SyncRequestMsg { FullSync = true } });
            await _synced.Task.WaitAsync(TimeSpan.FromSeconds(30), cancellation);
            _target = device is { } id ? Split(id)
                : _devices.TryPeek(out var first) ? first
                : throw new InvalidOperationException("no device synced to this edge: pass --device or assign one");
        }

        /// <summary>
        /// One in-flight slot: a reused UplinkMsg of <paramref name="batch"/> telemetry events whose timestamps
        /// (and the uplink id) are rewritten in place, sent, then awaited (safe: the previous write completed).
        /// </summary>
        public async Task UplinkLoopAsync(int worker, int batch, TimeSpan timeout, LatencyRecorder latency, StrongBox<long> clockTs, CancellationToken stop)
        {
            var msg = new UplinkMsg();
            var lists = new TsKvListProto[batch];
            for (var i = 0; i < batch; i++)
            {
                var list = new TsKvListProto();
                for (var k = 0; k < _keys; k++)
                {
                    list.Kv.Add(new KeyValueProto { Key = "k" + k.ToString(CultureInfo.InvariantCulture), Type = KeyValueType.DoubleV, DoubleV = i + k });
                }

                var telemetry = new PostTelemetryMsg();
                telemetry.TsKvList.Add(list);
                lists[i] = list;
                msg.EntityData.Add(new EntityDataProto { EntityIdMSB = _target.Msb, EntityIdLSB = _target.Lsb, EntityType = "DEVICE", PostTelemetryMsg = telemetry });
            }

            var request = new RequestMsg { MsgType = RequestMsgType.UplinkRpcMessage, UplinkMsg = msg };
            while (!stop.IsCancellationRequested)
            {
                var ts = Interlocked.Add(ref clockTs.Value, batch) - batch;
                foreach (var list in lists)
                {
                    list.Ts = ts++;
                }

                msg.UplinkMsgId = Interlocked.Increment(ref _nextUplinkId);
                var waiter = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                _pending[msg.UplinkMsgId] = waiter;
                var started = Stopwatch.GetTimestamp();
                Interlocked.Add(ref Counters.Sent, batch);
                try
                {
                    await SendAsync(request);
                    // The run's end does not cancel an uplink already sent: it gets up to --timeout for its answer.
                    var success = await waiter.Task.WaitAsync(timeout, CancellationToken.None);
                    if (success)
                    {
                        latency.RecordTicks(worker, Stopwatch.GetTimestamp() - started);
                        Interlocked.Add(ref Counters.Acked, batch);
                    }
                    else
                    {
                        Fail(batch, "UplinkResponseMsg success=false");
                    }
                }
                catch (Exception e) when (e is TimeoutException or RpcException or IOException or InvalidOperationException or ObjectDisposedException)
                {
                    _pending.TryRemove(msg.UplinkMsgId, out _);
                    Fail(batch, e is TimeoutException ? $"no UplinkResponseMsg within {timeout.TotalSeconds:F0} s" : e.Message);
                    if (e is not TimeoutException)
                    {
                        return; // the stream is gone
                    }
                }
            }
        }

        private void Fail(int batch, string error)
        {
            Interlocked.Add(ref Counters.Errors, batch);
            Interlocked.CompareExchange(ref _firstError, error, null);
        }

        private async Task SendAsync(RequestMsg msg)
        {
            await _writeLock.WaitAsync();
            try
            {
                await _call.RequestStream.WriteAsync(msg);
            }
            finally
            {
                _writeLock.Release();
            }
        }

        private async Task ReadLoopAsync()
        {
            try
            {
                await foreach (var msg in _call.ResponseStream.ReadAllAsync())
                {
                    if (msg.ConnectResponseMsg is { } connect)
                    {
                        _connected.TrySetResult(connect);
                    }

                    if (msg.UplinkResponseMsg is { } response && _pending.TryRemove(response.UplinkMsgId, out var waiter))
                    {
                        waiter.TrySetResult(response.Success);
                    }

                    if (msg.DownlinkMsg is { } downlink)
                    {
                        await OnDownlinkAsync(downlink);
                    }
                }

                FailAll(new IOException("the server closed the edge stream"));
            }
            catch (Exception e) when (e is RpcException or IOException or InvalidOperationException or ObjectDisposedException)
            {
                FailAll(e);
            }
        }

        private void FailAll(Exception e)
        {
            _connected.TrySetException(e);
            _synced.TrySetException(e);
            foreach (var id in _pending.Keys)
            {
                if (_pending.TryRemove(id, out var waiter))
                {
                    waiter.TrySetException(e);
                }
            }
        }

        /// <summary>Acknowledges every downlink; notes synced devices; answers two-way RPCs with their params.</summary>
        private async Task OnDownlinkAsync(DownlinkMsg downlink)
        {
            foreach (var device in downlink.DeviceUpdateMsg)
            {
                if (device.MsgType != UpdateMsgType.EntityDeletedRpcMessage)
                {
                    _devices.Enqueue((device.IdMSB, device.IdLSB));
                }
            }

            var replies = new UplinkMsg();
            foreach (var rpc in downlink.DeviceRpcCallMsg)
            {
                if (!rpc.Oneway)
                {
                    var reply = rpc.Clone();
                    reply.RequestMsg = null;
                    reply.ResponseMsg = new RpcResponseMsg { Response = rpc.RequestMsg.Params };
                    replies.DeviceRpcCallMsg.Add(reply);
                }
            }

            if (downlink.SyncCompletedMsg is not null)
            {
                _synced.TrySetResult();
            }

            await SendAsync(new RequestMsg { DownlinkResponseMsg = new DownlinkResponseMsg { DownlinkMsgId = downlink.DownlinkMsgId, Success = true } });
            if (replies.DeviceRpcCallMsg.Count > 0)
            {
                replies.UplinkMsgId = Interlocked.Increment(ref _nextUplinkId);
                await SendAsync(new RequestMsg { MsgType = RequestMsgType.UplinkRpcMessage, UplinkMsg = replies });
            }
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                await _call.RequestStream.CompleteAsync();
                await _reader.WaitAsync(TimeSpan.FromSeconds(2));
            }
            catch (Exception e) when (e is RpcException or IOException or InvalidOperationException or TimeoutException or ObjectDisposedException)
            {
                // Closing anyway.
            }

            _call.Dispose();
            _channel.Dispose();
            _writeLock.Dispose();
        }
    }
}
