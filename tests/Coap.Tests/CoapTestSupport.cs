using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Perf.Coap.Internal;
using Perf.Core;
using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Coap.Tests;

internal sealed class FakeDeviceApi : IDeviceApi
{
    public static readonly Device Sensor = new(Guid.NewGuid(), Guid.NewGuid(), Guid.Empty, "sensor-1", "default", null, 0, null, false);

    public List<(string Call, string Json)> Calls { get; } = [];
    public TaskCompletionSource<UplinkResult>? Hold { get; set; }
    public UplinkStatus NextStatus { get; set; }
    public byte[] Firmware { get; set; } = [];
    public List<AttributeKv> Shared { get; } = [new AttributeKv(1, new KvEntry("s", "x"))];

    public Device? Authenticate(ReadOnlySpan<byte> utf8Token) => utf8Token.SequenceEqual("good"u8) ? Sensor : null;

    public Device? Authenticate(string token) => token == "good" ? Sensor : null;

    /// <summary>Skip recording (allocation measurements).</summary>
    public bool Quiet { get; set; }

    private ValueTask<UplinkResult> Record(string call, ReadOnlySequence<byte> json)
    {
        if (Quiet)
        {
            return new ValueTask<UplinkResult>(new UplinkResult(NextStatus));
        }

        lock (Calls)
        {
            Calls.Add((call, Encoding.UTF8.GetString(json)));
        }

        return Hold is { } hold ? new ValueTask<UplinkResult>(hold.Task) : new ValueTask<UplinkResult>(new UplinkResult(NextStatus));
    }

    public int CallCount(string call)
    {
        lock (Calls)
        {
            return Calls.Count(c => c.Call == call);
        }
    }

    public ValueTask<UplinkResult> PostTelemetryAsync(Device device, ReadOnlySequence<byte> json) => Record("telemetry", json);
    public ValueTask<UplinkResult> PostAttributesAsync(Device device, ReadOnlySequence<byte> json) => Record("attributes", json);
    public ValueTask<UplinkResult> RpcReplyAsync(Device device, int requestId, ReadOnlySequence<byte> json) => Record($"rpc-reply:{requestId}", json);
    public ValueTask<UplinkResult> ClaimAsync(Device device, ReadOnlySequence<byte> json) => Record("claim", json);

    public ValueTask<AttributesReply> RequestAttributesAsync(Device device, IReadOnlyList<string>? clientKeys, IReadOnlyList<string>? sharedKeys, bool onlyShared = false) =>
        new(new AttributesReply([new AttributeKv(1, new KvEntry("a", 1L))], Shared));

    public ValueTask<ClientRpcResult> ClientRpcAsync(Device device, ReadOnlySequence<byte> json, CancellationToken cancellationToken)
    {
        _ = Record("client-rpc", json).AsTask();
        return new(new ClientRpcResult(UplinkResult.Success, "{\"time\":42}"));
    }

    public ValueTask<FirmwareChunkResult> GetFirmwareChunkAsync(Device device, string? title, string? version, int chunkSize, int chunkIndex)
    {
        var offset = (long)chunkSize * chunkIndex;
        var data = offset >= Firmware.Length ? [] : Firmware.AsSpan((int)offset, (int)Math.Min(chunkSize, Firmware.Length - offset)).ToArray();
        return new(new FirmwareChunkResult(UplinkResult.Success, data));
    }

    public ValueTask<Device> GetOrCreateGatewayChildAsync(Device gateway, string name, string? type) => throw new NotSupportedException();
}

/// <summary>The core's real session table, recording what the door registers.</summary>
internal sealed class RecordingSessionTable : ISessionTable
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

/// <summary>A received message, copied out of the datagram.</summary>
internal sealed record CoapTestMessage(CoapMessageType Type, byte Code, ushort MessageId, byte[] Token, List<(ushort Number, byte[] Value)> Options, byte[] Payload)
{
    public static CoapTestMessage Parse(byte[] datagram)
    {
        var reader = new CoapMessageReader(datagram);
        var options = new List<(ushort, byte[])>();
        foreach (var o in reader.Options)
        {
            options.Add((o.Number, o.Value.ToArray()));
        }

        return new CoapTestMessage(reader.Type, reader.Code, reader.MessageId, reader.Token.ToArray(), options, reader.Payload.ToArray());
    }

    public uint? UInt(ushort number)
    {
        foreach (var (n, v) in Options)
        {
            if (n == number)
            {
                return new CoapOption(n, v).GetUInt();
            }
        }

        return null;
    }

    public string Text => Encoding.UTF8.GetString(Payload);
}

/// <summary>A CoAP server over the fake core on a loopback port, and a raw UDP client.</summary>
internal sealed class CoapServerHarness : IAsyncDisposable
{
    private ushort _nextId = 100;

    private CoapServerHarness(CoapServer server, FakeDeviceApi api, RecordingSessionTable sessions, UdpClient client)
    {
        Server = server;
        Api = api;
        Sessions = sessions;
        Client = client;
    }

    public CoapServer Server { get; }
    public FakeDeviceApi Api { get; }
    public RecordingSessionTable Sessions { get; }
    public UdpClient Client { get; }

    public static async Task<CoapServerHarness> StartAsync(Action<CoapOptions>? configure = null)
    {
        var options = new CoapOptions { BindAddress = IPAddress.Loopback, Port = 0 };
        configure?.Invoke(options);
        var api = new FakeDeviceApi();
        var sessions = new RecordingSessionTable();
        var server = new CoapServer(NullLogger<CoapServer>.Instance, Options.Create(options), api, sessions);
        await server.StartAsync(CancellationToken.None);
        var client = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        client.Connect(IPAddress.Loopback, server.LocalEndPoint!.Port);
        return new CoapServerHarness(server, api, sessions, client);
    }

    public ushort NextId() => _nextId++;

    public static byte[] Request(CoapMessageType type, byte code, ushort id, byte[] token, string path, Action<CoapTestWriter>? more = null, byte[]? payload = null, params string[] queries)
    {
        var w = new CoapTestWriter(type, code, id, token);
        // Options must be added in number order: Observe (6) comes from "more" only when it sorts first.
        more?.Invoke(w);
        foreach (var segment in path.Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            w.Option(CoapOptionNumber.UriPath, Encoding.UTF8.GetBytes(segment));
        }

        foreach (var q in queries)
        {
            w.Option(CoapOptionNumber.UriQuery, Encoding.UTF8.GetBytes(q));
        }

        return w.Finish(payload ?? []);
    }

    public Task SendAsync(byte[] datagram) => Client.SendAsync(datagram).AsTask();

    public async Task<CoapTestMessage> ReceiveAsync(int timeoutMs = 5000)
    {
        using var cts = new CancellationTokenSource(timeoutMs);
        var result = await Client.ReceiveAsync(cts.Token);
        return CoapTestMessage.Parse(result.Buffer);
    }

    public async Task<bool> NothingWithinAsync(int ms)
    {
        try
        {
            await ReceiveAsync(ms);
            return false;
        }
        catch (OperationCanceledException)
        {
            return true;
        }
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.StopAsync(CancellationToken.None);
        Server.Dispose();
    }
}
