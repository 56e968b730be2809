using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Perf.Core;
using Perf.Core.Domain;
using Perf.Core.Telemetry;
using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Kestrel.Mqtt.Tests;

internal sealed class FakeDeviceApi : IDeviceApi
{
    public static readonly Device Sensor = new(Guid.NewGuid(), Guid.NewGuid(), Guid.Empty, "sensor-1", "default", null, 0, null, false);
    public static readonly Device Gateway = new(Guid.NewGuid(), Guid.NewGuid(), Guid.Empty, "gw-1", "gateway", null, 0, null, true);

    public List<(string Call, string Device, string Json)> Calls { get; } = [];
    public TaskCompletionSource<UplinkResult>? Hold { get; set; }

    /// <summary>Outcomes handed out one per uplink, in order, before <see cref="Hold"/> and <see cref="NextStatus"/> apply.</summary>
    public Queue<TaskCompletionSource<UplinkResult>> HoldEach { get; } = new();

    private readonly SemaphoreSlim _callMade = new(0);

    /// <summary>Completes when the door has made <paramref name="count"/> calls in all (fails after 10 s).</summary>
    public async Task WaitForCallsAsync(int count)
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            lock (Calls)
            {
                if (Calls.Count >= count)
                {
                    return;
                }
            }

            await _callMade.WaitAsync(deadline.Token);
        }
    }
    public UplinkStatus NextStatus { get; set; }

    public Device? Authenticate(ReadOnlySpan<byte> utf8Token) => Authenticate(Encoding.UTF8.GetString(utf8Token));

    public Device? Authenticate(string token) => token switch { "good" => Sensor, "gw" => Gateway, _ => null };

    private ValueTask<UplinkResult> Record(string call, Device d, ReadOnlySequence<byte> json)
    {
        TaskCompletionSource<UplinkResult>? each;
        lock (Calls)
        {
            Calls.Add((call, d.Name, Encoding.UTF8.GetString(json)));
            HoldEach.TryDequeue(out each);
        }

        _callMade.Release();
        if (each is not null)
        {
            return new ValueTask<UplinkResult>(each.Task);
        }

        if (Hold is { } hold)
        {
            return new ValueTask<UplinkResult>(hold.Task);
        }

        return new ValueTask<UplinkResult>(new UplinkResult(NextStatus));
    }

    public ValueTask<UplinkResult> PostTelemetryAsync(Device device, ReadOnlySequence<byte> json) => Record("telemetry", device, json);
    public ValueTask<UplinkResult> PostAttributesAsync(Device device, ReadOnlySequence<byte> json) => Record("attributes", device, json);
    public ValueTask<UplinkResult> RpcReplyAsync(Device device, int requestId, ReadOnlySequence<byte> json) => Record($"rpc-reply:{requestId}", device, json);
    public ValueTask<UplinkResult> ClaimAsync(Device device, ReadOnlySequence<byte> json) => Record("claim", device, json);

    public ValueTask<AttributesReply> RequestAttributesAsync(Device device, IReadOnlyList<string>? clientKeys, IReadOnlyList<string>? sharedKeys, bool onlyShared = false)
    {
        lock (Calls)
        {
            Calls.Add(("attr-request", device.Name, $"{string.Join(',', clientKeys ?? ["*"])}|{string.Join(',', sharedKeys ?? ["*"])}"));
        }

        return new(new AttributesReply([new AttributeKv(1, new KvEntry("a", 1L))], [new AttributeKv(1, new KvEntry("s", "x"))]));
    }

    public ValueTask<ClientRpcResult> ClientRpcAsync(Device device, ReadOnlySequence<byte> json, CancellationToken cancellationToken)
    {
        _ = Record("client-rpc", device, json).AsTask();
        return new(new ClientRpcResult(UplinkResult.Success, "{\"time\":42}"));
    }

    public ValueTask<FirmwareChunkResult> GetFirmwareChunkAsync(Device device, string? title, string? version, int chunkSize, int chunkIndex) =>
        new(new FirmwareChunkResult(UplinkResult.Success, new byte[Math.Min(chunkSize, 10)]));

    public ValueTask<Device> GetOrCreateGatewayChildAsync(Device gateway, string name, string? type) =>
        new(new Device(Guid.NewGuid(), gateway.TenantId, Guid.Empty, name, type ?? "default", null, 0, null, false));
}

/// <summary>The core's real session table, plus the list of sessions the door registered, for assertions.</summary>
internal sealed class FakeSessionTable : ISessionTable
{
    private readonly SessionTable _table = new();

    public List<IDeviceSession> Sessions { get; } = [];

    public int Count => _table.Count;

    public event Action<IDeviceSession>? SessionAvailable
    {
        add => _table.SessionAvailable += value;
        remove => _table.SessionAvailable -= value;
    }

    public void Register(IDeviceSession session)
    {
        lock (Sessions)
        {
            Sessions.Add(session);
        }

        _table.Register(session);
    }

    public void Unregister(IDeviceSession session)
    {
        lock (Sessions)
        {
            Sessions.Remove(session);
        }

        _table.Unregister(session);
    }

    public IReadOnlyList<IDeviceSession> GetSessions(Guid deviceId) => _table.GetSessions(deviceId);

    public void SubscriptionsChanged(IDeviceSession session) => _table.SubscriptionsChanged(session);
}

/// <summary>Drives <see cref="MqttConnectionHandler"/> through in-memory pipes.</summary>
internal sealed class MqttTestHost : IAsyncDisposable
{
    private readonly Pipe _toServer = new();
    private readonly Pipe _toClient = new();

    public MqttTestHost(Action<MqttOptions>? configure = null)
    {
        var options = new MqttOptions { TimerPeriod = TimeSpan.FromMilliseconds(50) };
        configure?.Invoke(options);
        Api = new FakeDeviceApi();
        Sessions = new FakeSessionTable();
        Handler = new MqttConnectionHandler(Api, Sessions, Options.Create(options), NullLogger<MqttConnectionHandler>.Instance);
        Running = Start("c1");
    }

    /// <summary>A second connection to the same handler (same api, session table and ticker) as <paramref name="first"/>.</summary>
    public MqttTestHost(MqttTestHost first)
    {
        Api = first.Api;
        Sessions = first.Sessions;
        Handler = first.Handler;
        Running = Start("c" + Interlocked.Increment(ref s_next));
    }

    private static int s_next = 1;

    public FakeDeviceApi Api { get; }
    public FakeSessionTable Sessions { get; }
    public MqttConnectionHandler Handler { get; }

    private Task Start(string id)
    {
        var context = new DefaultConnectionContext(id, new DuplexPipe(_toServer.Reader, _toClient.Writer), new DuplexPipe(_toClient.Reader, _toServer.Writer));
        return Task.Run(() => Handler.OnConnectedAsync(context));
    }
    public Task Running { get; }

    public async Task SendAsync(Action<IBufferWriter<byte>> write)
    {
        write(_toServer.Writer);
        await _toServer.Writer.FlushAsync();
    }

    /// <summary>Half-closes: the server sees the end of its input (FIN) and may still write.</summary>
    public Task FinishSendingAsync() => _toServer.Writer.CompleteAsync().AsTask();

    public Task ConnectAsync(string? token = "good", ushort keepAlive = 60) =>
        SendAsync(w => MqttPacketWriter.WriteConnect(w, "client", token, keepAliveSeconds: keepAlive));

    public Task PublishAsync(string topic, string payload, byte qos = 0, ushort id = 0) =>
        SendAsync(w => MqttPacketWriter.WritePublish(w, topic, Encoding.UTF8.GetBytes(payload), qos, id));

    /// <summary>The next packet from the server, with topic and payload copied out.</summary>
    public async Task<Received> ReceiveAsync(int timeoutMs = 5000)
    {
        using var cts = new CancellationTokenSource(timeoutMs);
        while (true)
        {
            var result = await _toClient.Reader.ReadAsync(cts.Token);
            var buffer = result.Buffer;
            var reader = new SequenceReader<byte>(buffer);
            if (MqttPacketReader.TryRead(ref reader, 1 << 20, out var p))
            {
                var received = new Received(p.Type, p.PacketId, p.QoS, p.Dup, p.ReturnCode, Encoding.UTF8.GetString(p.Topic), Encoding.UTF8.GetString(p.Payload), p.Payload.ToArray());
                _toClient.Reader.AdvanceTo(reader.Position);
                return received;
            }

            if (result.IsCompleted)
            {
                _toClient.Reader.AdvanceTo(buffer.End);
                throw new EndOfStreamException("server closed the connection");
            }

            _toClient.Reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>True when the server closes the connection within the timeout (after any packets it sent).</summary>
    public async Task<bool> ClosedWithinAsync(int timeoutMs) =>
        await Task.WhenAny(Running, Task.Delay(timeoutMs)) == Running;

    public async ValueTask DisposeAsync()
    {
        await _toServer.Writer.CompleteAsync();
        await Task.WhenAny(Running, Task.Delay(5000));
    }

    internal readonly record struct Received(MqttPacketType Type, ushort PacketId, int QoS, bool Dup, byte ReturnCode, string Topic, string Payload, byte[] Bytes);

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
    }
}
