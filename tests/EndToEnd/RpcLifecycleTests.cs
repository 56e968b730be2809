using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Perf.Core;

namespace Perf.EndToEnd;

/// <summary>
/// A raw MQTT 3.1.1 device that subscribes to RPC requests and never acknowledges them: the request
/// stays SENT, as with a device that loses power mid-delivery.
/// </summary>
internal sealed class SilentMqttDevice : IDisposable
{
    private readonly TcpClient _client = new();
    private NetworkStream? _stream;

    public static async Task<SilentMqttDevice> ConnectAsync(HostFixture fixture, string token)
    {
        var device = new SilentMqttDevice();
        await device._client.ConnectAsync(IPAddress.Loopback, fixture.Endpoints.Mqtt!.Port);
        device._stream = device._client.GetStream();
        var user = Encoding.UTF8.GetBytes(token);
        var clientId = Encoding.UTF8.GetBytes("silent-" + Guid.NewGuid().ToString("N")[..6]);
        var body = new List<byte> { 0, 4, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 4, 0x82, 0, 60 };
        body.AddRange([(byte)(clientId.Length >> 8), (byte)clientId.Length, .. clientId]);
        body.AddRange([(byte)(user.Length >> 8), (byte)user.Length, .. user]);
        await device.WriteAsync(0x10, body);
        var connack = await device.ReadPacketAsync();
        Assert.Equal(0x20, connack.Header);
        Assert.Equal(0, connack.Body[1]);
        var filter = "v1/devices/me/rpc/request/+"u8.ToArray();
        await device.WriteAsync(0x82, [0, 1, (byte)(filter.Length >> 8), (byte)filter.Length, .. filter, 1]);
        Assert.Equal(0x90, (await device.ReadPacketAsync()).Header);
        return device;
    }

    /// <summary>Waits for an RPC PUBLISH (not acknowledged) and returns its topic.</summary>
    public async Task<string> ReceiveRequestAsync()
    {
        while (true)
        {
            var packet = await ReadPacketAsync();
            if ((packet.Header & 0xF0) == 0x30)
            {
                var topicLength = BinaryPrimitives.ReadUInt16BigEndian(packet.Body);
                return Encoding.UTF8.GetString(packet.Body, 2, topicLength);
            }
        }
    }

    public void Dispose() => _client.Dispose();

    private async Task WriteAsync(byte header, List<byte> body)
    {
        var frame = new List<byte> { header };
        var length = body.Count;
        do
        {
            var digit = (byte)(length % 128);
            length /= 128;
            frame.Add(length > 0 ? (byte)(digit | 0x80) : digit);
        }
        while (length > 0);
        frame.AddRange(body);
        await _stream!.WriteAsync(frame.ToArray());
    }

    private async Task<(byte Header, byte[] Body)> ReadPacketAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var one = new byte[1];
        await _stream!.ReadExactlyAsync(one, timeout.Token);
        var header = one[0];
        int length = 0, multiplier = 1;
        do
        {
            await _stream.ReadExactlyAsync(one, timeout.Token);
            length += (one[0] & 0x7F) * multiplier;
            multiplier *= 128;
        }
        while ((one[0] & 0x80) != 0);
        var body = new byte[length];
        await _stream.ReadExactlyAsync(body, timeout.Token);
        return (header, body);
    }
}

/// <summary>The persistent RPC lifecycle end to end: expiry, retries to FAILED, delete of an active RPC.</summary>
[Collection(HostCollection.Name)]
public sealed class RpcLifecycleTests(HostFixture fixture)
{
    private static string Unique(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..8];

    private Task<PersistentRpc> StatusAsync(string rpcId, PersistentRpcStatus status) =>
        PersistentRpcWaiter.StatusAsync(fixture, rpcId, status, 20);

    [Fact]
    public async Task PersistentRpc_QueuedPastItsExpirationTime_BecomesExpired_AndIsNeverDelivered()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, token) = await rest.CreateDeviceAsync(Unique("expire"));
        var expiration = DateTimeOffset.UtcNow.AddMilliseconds(1500).ToUnixTimeMilliseconds();
        var rpcId = (await rest.PostAsync($"/api/rpc/twoway/{id}", new { method = "late", @params = new { }, persistent = true, expirationTime = expiration }))["rpcId"]!.GetValue<string>();

        await StatusAsync(rpcId, PersistentRpcStatus.Expired);
        Assert.Equal("EXPIRED", (await rest.GetAsync($"/api/rpc/persistent/{rpcId}"))["status"]!.GetValue<string>());

        // The device connects afterwards: the first request it sees is a fresh one, not the expired one.
        await using var device = await MqttRpcDevice.ConnectAsync(fixture, token);
        var fresh = rest.Http.PostAsJsonAsync($"/api/rpc/oneway/{id}", new { method = "fresh", @params = new { } });
        var (_, body) = await device.NextRequestAsync();
        Assert.Equal("fresh", body["method"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.OK, (await fresh).StatusCode);
    }

    [Fact]
    public async Task PersistentRpc_NeverAcknowledged_IsRetriedOnReconnect_ThenFailed()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, token) = await rest.CreateDeviceAsync(Unique("retry"));
        var expiration = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeMilliseconds();
        var rpcId = (await rest.PostAsync($"/api/rpc/twoway/{id}", new { method = "flaky", @params = new { }, persistent = true, retries = 1, expirationTime = expiration }))["rpcId"]!.GetValue<string>();

        // Attempt 1: delivered to a device that drops the connection without PUBACK.
        using (var first = await SilentMqttDevice.ConnectAsync(fixture, token))
        {
            Assert.StartsWith("v1/devices/me/rpc/request/", await first.ReceiveRequestAsync(), StringComparison.Ordinal);
            await StatusAsync(rpcId, PersistentRpcStatus.Sent);
        }

        // Attempt 2 (the one retry): same again.
        using (var second = await SilentMqttDevice.ConnectAsync(fixture, token))
        {
            Assert.StartsWith("v1/devices/me/rpc/request/", await second.ReceiveRequestAsync(), StringComparison.Ordinal);
        }

        // Retries exhausted: the next session does not get it, and the RPC is FAILED.
        using var third = await SilentMqttDevice.ConnectAsync(fixture, token);
        var failed = await StatusAsync(rpcId, PersistentRpcStatus.Failed);
        Assert.Equal(2, failed.Attempts);
        Assert.Equal("FAILED", (await rest.GetAsync($"/api/rpc/persistent/{rpcId}"))["status"]!.GetValue<string>());
    }

    [Fact]
    public async Task DeletingAQueuedPersistentRpc_StopsItsDelivery()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, token) = await rest.CreateDeviceAsync(Unique("delete"));
        var expiration = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeMilliseconds();
        var doomed = (await rest.PostAsync($"/api/rpc/twoway/{id}", new { method = "doomed", @params = new { }, persistent = true, expirationTime = expiration }))["rpcId"]!.GetValue<string>();

        // The seed's Python shape: requests.delete(f"{host}/api/rpc/persistent/{rpc_id}") -> 200.
        Assert.Equal(HttpStatusCode.OK, (await rest.Http.DeleteAsync($"/api/rpc/persistent/{doomed}")).StatusCode);
        await StatusAsync(doomed, PersistentRpcStatus.Deleted);

        await using var device = await MqttRpcDevice.ConnectAsync(fixture, token);
        var kept = (await rest.PostAsync($"/api/rpc/twoway/{id}", new { method = "kept", @params = new { }, persistent = true, expirationTime = expiration }))["rpcId"]!.GetValue<string>();
        var (requestId, body) = await device.NextRequestAsync();
        Assert.Equal("kept", body["method"]!.GetValue<string>());
        await device.ReplyAsync(requestId, """{"ok":true}""");
        await StatusAsync(kept, PersistentRpcStatus.Successful);
    }
}
