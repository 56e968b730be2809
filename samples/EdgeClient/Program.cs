using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Net.Client;
using Perf.Api.Edge.Protos;
using Perf.Api.Edge.Protos.Transport;

// A small ThingsBoard-Edge-protocol client: connects, acknowledges downlinks (answering RPC requests
// with an echo), and optionally uplinks telemetry as fast as the server acknowledges it.
//
//   dotnet run -c Release --project samples/EdgeClient -- --setup http://127.0.0.1:8080 --seconds 10
//   dotnet run -c Release --project samples/EdgeClient -- --server http://127.0.0.1:7070 --routing-key K --secret S
var options = Options.Parse(args);
if (options.Help)
{
    Console.WriteLine("""
        Perf.EdgeClient: speaks edge.EdgeRpcService/handleMsgs.
          --server URL        gRPC endpoint (default http://127.0.0.1:7070)
          --routing-key KEY   edge routing key    --secret SECRET   edge secret
          --setup URL         REST base: log in as --user/--password, create an edge and a device, assign it
          --user U --password P   REST login (default tenant@example.com / tenant)
          --device ID         device to uplink telemetry for (default: the first synced device)
          --seconds N         uplink telemetry for N seconds, then report and exit (0: just stay connected)
          --batch N           events per UplinkMsg (default 50, the reference edge's batch)
          --keys N            telemetry keys per event (default 1)
          --inflight N        UplinkMsgs awaiting their UplinkResponseMsg at once (default 1, as the reference edge)
        """);
    return 0;
}

if (options.Setup is { } restBase)
{
    (options.RoutingKey, options.Secret, options.Device) = await SetupAsync(restBase, options);
    Console.WriteLine($"setup: edge routingKey={options.RoutingKey} device={options.Device}");
}

using var channel = GrpcChannel.ForAddress(options.Server, new GrpcChannelOptions { MaxReceiveMessageSize = 4 << 20 });
var client = new EdgeRpcService.EdgeRpcServiceClient(channel);
using var call = client.handleMsgs();
var writeLock = new SemaphoreSlim(1, 1);
async Task SendAsync(RequestMsg msg)
{
    await writeLock.WaitAsync();
    try
    {
        await call.RequestStream.WriteAsync(msg);
    }
    finally
    {
        writeLock.Release();
    }
}

var nextUplinkId = 0;
var connected = new TaskCompletionSource<ConnectResponseMsg>(TaskCreationOptions.RunContinuationsAsynchronously);
var synced = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
var pending = new ConcurrentDictionary<int, TaskCompletionSource<UplinkResponseMsg>>();
var devices = new ConcurrentQueue<(long Msb, long Lsb)>();
var reader = Task.Run(async () =>
{
    await foreach (var msg in call.ResponseStream.ReadAllAsync())
    {
        if (msg.ConnectResponseMsg is { } connect)
        {
            connected.TrySetResult(connect);
        }
        if (msg.UplinkResponseMsg is { } response && pending.TryRemove(response.UplinkMsgId, out var waiter))
        {
            waiter.TrySetResult(response);
        }
        if (msg.DownlinkMsg is { } downlink)
        {
            await OnDownlinkAsync(downlink);
        }
    }
});

async Task OnDownlinkAsync(DownlinkMsg downlink)
{
    foreach (var device in downlink.DeviceUpdateMsg)
    {
        Console.WriteLine($"downlink {downlink.DownlinkMsgId}: device {device.MsgType} {device.Entity}");
        if (device.MsgType != UpdateMsgType.EntityDeletedRpcMessage)
        {
            devices.Enqueue((device.IdMSB, device.IdLSB));
        }
    }
    foreach (var data in downlink.EntityData)
    {
        Console.WriteLine($"downlink {downlink.DownlinkMsgId}: attributes {data.PostAttributeScope} {data.AttributesUpdatedMsg}");
    }
    var replies = new UplinkMsg();
    foreach (var rpc in downlink.DeviceRpcCallMsg)
    {
        Console.WriteLine($"downlink {downlink.DownlinkMsgId}: rpc {rpc.RequestMsg.Method} {rpc.RequestMsg.Params}");
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
        Console.WriteLine($"downlink {downlink.DownlinkMsgId}: sync completed");
        synced.TrySetResult();
    }
    await SendAsync(new RequestMsg { DownlinkResponseMsg = new DownlinkResponseMsg { DownlinkMsgId = downlink.DownlinkMsgId, Success = true } });
    if (replies.DeviceRpcCallMsg.Count > 0)
    {
        _ = UplinkAsync(replies);
    }
}

Task<UplinkResponseMsg> UplinkAsync(UplinkMsg msg)
{
    msg.UplinkMsgId = Interlocked.Increment(ref nextUplinkId);
    var waiter = new TaskCompletionSource<UplinkResponseMsg>(TaskCreationOptions.RunContinuationsAsynchronously);
    pending[msg.UplinkMsgId] = waiter;
    return SendAsync(new RequestMsg { MsgType = RequestMsgType.UplinkRpcMessage, UplinkMsg = msg }).ContinueWith(_ => waiter.Task).Unwrap();
}

await SendAsync(new RequestMsg
{
    MsgType = RequestMsgType.ConnectRpcMessage,
    ConnectRequestMsg = new ConnectRequestMsg
    {
        EdgeRoutingKey = options.RoutingKey,
        EdgeSecret = options.Secret,
        EdgeVersion = EdgeVersion.VLatest,
        MaxInboundMessageSize = 4 << 20,
    },
});
var accepted = await connected.Task.WaitAsync(TimeSpan.FromSeconds(10));
Console.WriteLine($"connect: {accepted.ResponseCode} {accepted.ErrorMsg} edge '{accepted.Configuration?.Name}'");
if (accepted.ResponseCode != ConnectResponseCode.Accepted)
{
    return 1;
}
await SendAsync(new RequestMsg { MsgType = RequestMsgType.SyncRequestRpcMessage, SyncRequestMsg = new SyncRequestMsg { FullSync = true } });
await synced.Task.WaitAsync(TimeSpan.FromSeconds(30));

if (options.Seconds <= 0)
{
    Console.WriteLine("connected; Ctrl-C to quit");
    await reader;
    return 0;
}

var target = options.Device is { } id ? Split(id) : devices.TryPeek(out var first) ? first : throw new InvalidOperationException("no device: pass --device or assign one to the edge");
var stopwatch = Stopwatch.StartNew();
var deadline = TimeSpan.FromSeconds(options.Seconds);
long events = 0, failed = 0;
var latencies = new ConcurrentBag<double>();
var ts = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 1_000_000_000;
async Task WorkerAsync()
{
    while (stopwatch.Elapsed < deadline)
    {
        var msg = new UplinkMsg();
        for (var i = 0; i < options.Batch; i++)
        {
            var list = new TsKvListProto { Ts = Interlocked.Increment(ref ts) };
            for (var k = 0; k < options.Keys; k++)
            {
                list.Kv.Add(new KeyValueProto { Key = "k" + k.ToString(CultureInfo.InvariantCulture), Type = KeyValueType.DoubleV, DoubleV = i + k });
            }
            var telemetry = new PostTelemetryMsg();
            telemetry.TsKvList.Add(list);
            msg.EntityData.Add(new EntityDataProto { EntityIdMSB = target.Msb, EntityIdLSB = target.Lsb, EntityType = "DEVICE", PostTelemetryMsg = telemetry });
        }
        var started = Stopwatch.GetTimestamp();
        var response = await UplinkAsync(msg);
        latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        if (response.Success)
        {
            Interlocked.Add(ref events, options.Batch);
        }
        else
        {
            Interlocked.Increment(ref failed);
        }
    }
}
await Task.WhenAll(Enumerable.Range(0, options.Inflight).Select(_ => Task.Run(WorkerAsync)));
var seconds = stopwatch.Elapsed.TotalSeconds;
var sorted = latencies.OrderBy(l => l).ToArray();
double P(double q) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"uplinked {events} events ({events * options.Keys} entries) in {seconds:F1} s: {events / seconds:F0} events/s, {events * options.Keys / seconds:F0} entries/s; " +
    $"batch {options.Batch}, inflight {options.Inflight}, failed uplinks {failed}; ack latency ms p50 {P(0.5):F2} p99 {P(0.99):F2} max {P(1):F2}"));
await call.RequestStream.CompleteAsync();
return 0;

static (long Msb, long Lsb) Split(Guid id)
{
    Span<byte> bytes = stackalloc byte[16];
    id.TryWriteBytes(bytes, bigEndian: true, out _);
    return (System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(bytes), System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(bytes[8..]));
}

static async Task<(string RoutingKey, string Secret, Guid Device)> SetupAsync(string restBase, Options options)
{
    using var http = new HttpClient { BaseAddress = new Uri(restBase) };
    var login = await http.PostAsJsonAsync("/api/auth/login", new { username = options.User, password = options.Password });
    login.EnsureSuccessStatusCode();
    http.DefaultRequestHeaders.Add("X-Authorization", "Bearer " + (await login.Content.ReadFromJsonAsync<JsonObject>())!["token"]);
    var suffix = Guid.NewGuid().ToString("N")[..8];
    async Task<JsonObject> PostAsync(string path, object body)
    {
        var response = await http.PostAsJsonAsync(path, body);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<JsonObject>())!;
    }
    var edge = await PostAsync("/api/edge", new { name = "sample-edge-" + suffix, type = "default", routingKey = "sample-" + suffix, secret = "secret-" + suffix });
    var device = await PostAsync("/api/device", new { name = "sample-edge-device-" + suffix, type = "default" });
    var deviceId = device["id"]!["id"]!.GetValue<string>();
    await PostAsync($"/api/edge/{edge["id"]!["id"]}/device/{deviceId}", new { });
    return (edge["routingKey"]!.GetValue<string>(), edge["secret"]!.GetValue<string>(), Guid.Parse(deviceId));
}

internal sealed class Options
{
    public string Server { get; set; } = "http://127.0.0.1:7070";
    public string RoutingKey { get; set; } = "";
    public string Secret { get; set; } = "";
    public string? Setup { get; set; }
    public string User { get; set; } = "tenant@example.com";
    public string Password { get; set; } = "tenant";
    public Guid? Device { get; set; }
    public int Seconds { get; set; }
    public int Batch { get; set; } = 50;
    public int Keys { get; set; } = 1;
    public int Inflight { get; set; } = 1;
    public bool Help { get; set; }

    public static Options Parse(string[] args)
    {
        var o = new Options();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--server": o.Server = Next(); break;
                case "--routing-key": o.RoutingKey = Next(); break;
                case "--secret": o.Secret = Next(); break;
                case "--setup": o.Setup = Next(); break;
                case "--user": o.User = Next(); break;
                case "--password": o.Password = Next(); break;
                case "--device": o.Device = Guid.Parse(Next()); break;
                case "--seconds": o.Seconds = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--batch": o.Batch = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--keys": o.Keys = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--inflight": o.Inflight = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                default: o.Help = true; break;
            }
        }
        return o;
    }
}
