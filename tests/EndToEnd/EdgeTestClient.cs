using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Perf.Api.Edge.Protos;

namespace Perf.EndToEnd;

/// <summary>
/// An edge as the tests drive it: one handleMsgs stream over Grpc.Net.Client. Uplink responses are
/// matched to their uplinkMsgId; downlinks queue up for the test (and are acknowledged automatically
/// unless <see cref="AutoAck"/> is off).
/// </summary>
public sealed class EdgeTestClient : IAsyncDisposable
{
    // The server's generated stub is server-only; a client needs only the method's name and marshallers.
    private static readonly Method<RequestMsg, ResponseMsg> HandleMsgs = new(
        MethodType.DuplexStreaming, "edge.EdgeRpcService", "handleMsgs",
        Marshallers.Create(m => m.ToByteArray(), RequestMsg.Parser.ParseFrom),
        Marshallers.Create(m => m.ToByteArray(), ResponseMsg.Parser.ParseFrom));

    private readonly GrpcChannel _channel;
    private readonly AsyncDuplexStreamingCall<RequestMsg, ResponseMsg> _call;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly TaskCompletionSource<ConnectResponseMsg> _connect = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentDictionary<int, TaskCompletionSource<UplinkResponseMsg>> _uplinks = new();
    private readonly Task _reader;
    private int _nextUplinkId;

    public EdgeTestClient(int port)
    {
        _channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
        _call = _channel.CreateCallInvoker().AsyncDuplexStreamingCall(HandleMsgs, null, new CallOptions());
        _reader = Task.Run(ReadAsync);
    }

    public bool AutoAck { get; set; } = true;

    public Channel<DownlinkMsg> Downlinks { get; } = Channel.CreateUnbounded<DownlinkMsg>();

    public Channel<EdgeUpdateMsg> EdgeUpdates { get; } = Channel.CreateUnbounded<EdgeUpdateMsg>();

    public async Task<EdgeUpdateMsg> NextEdgeUpdateAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        return await EdgeUpdates.Reader.ReadAsync(cts.Token);
    }

    /// <summary>Completes when the server ends the stream (faulted with its status on an error).</summary>
    public Task Completion => _reader;

    public async Task<ConnectResponseMsg> ConnectAsync(string routingKey, string secret, EdgeVersion version = EdgeVersion.VLatest, int? maxInbound = null)
    {
        var connect = new ConnectRequestMsg { EdgeRoutingKey = routingKey, EdgeSecret = secret, EdgeVersion = version };
        if (maxInbound is { } max)
        {
            connect.MaxInboundMessageSize = max;
        }
        await SendAsync(new RequestMsg { MsgType = RequestMsgType.ConnectRpcMessage, ConnectRequestMsg = connect });
        // Generous: a freshly restarted host (Debug build, JIT, log replay) on a loaded CI machine answers slowly.
        return await _connect.Task.WaitAsync(TimeSpan.FromSeconds(30));
    }

    public async Task SendAsync(RequestMsg msg)
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

    public async Task<UplinkResponseMsg> UplinkAsync(UplinkMsg msg)
    {
        msg.UplinkMsgId = Interlocked.Increment(ref _nextUplinkId);
        var response = new TaskCompletionSource<UplinkResponseMsg>(TaskCreationOptions.RunContinuationsAsynchronously);
        _uplinks[msg.UplinkMsgId] = response;
        await SendAsync(new RequestMsg { MsgType = RequestMsgType.UplinkRpcMessage, UplinkMsg = msg });
        return await response.Task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    public Task AckAsync(int downlinkMsgId, bool success = true) =>
        SendAsync(new RequestMsg { DownlinkResponseMsg = new DownlinkResponseMsg { DownlinkMsgId = downlinkMsgId, Success = success } });

    public Task RequestSyncAsync(bool fullSync = true) =>
        SendAsync(new RequestMsg { MsgType = RequestMsgType.SyncRequestRpcMessage, SyncRequestMsg = new SyncRequestMsg { FullSync = fullSync } });

    /// <summary>The next downlink matching <paramref name="match"/>; others are skipped.</summary>
    public async Task<DownlinkMsg> NextDownlinkAsync(Func<DownlinkMsg, bool> match, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            var msg = await Downlinks.Reader.ReadAsync(cts.Token);
            if (match(msg))
            {
                return msg;
            }
        }
    }

    /// <summary>Downlinks up to and including the next syncCompletedMsg.</summary>
    public async Task<List<DownlinkMsg>> UntilSyncCompletedAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        var seen = new List<DownlinkMsg>();
        while (true)
        {
            var msg = await Downlinks.Reader.ReadAsync(cts.Token);
            seen.Add(msg);
            if (msg.SyncCompletedMsg is not null)
            {
                return seen;
            }
        }
    }

    private async Task ReadAsync()
    {
        try
        {
            await foreach (var msg in _call.ResponseStream.ReadAllAsync())
            {
                if (msg.ConnectResponseMsg is { } connect)
                {
                    _connect.TrySetResult(connect);
                }
                if (msg.UplinkResponseMsg is { } uplink && _uplinks.TryRemove(uplink.UplinkMsgId, out var waiter))
                {
                    waiter.TrySetResult(uplink);
                }
                if (msg.EdgeUpdateMsg is { } update)
                {
                    EdgeUpdates.Writer.TryWrite(update);
                }
                if (msg.DownlinkMsg is { } downlink)
                {
                    if (AutoAck)
                    {
                        await AckAsync(downlink.DownlinkMsgId);
                    }
                    Downlinks.Writer.TryWrite(downlink);
                }
            }
        }
        catch (Exception e)
        {
            _connect.TrySetException(e);
            Downlinks.Writer.TryComplete(e);
            throw;
        }
        Downlinks.Writer.TryComplete();
    }

    public static Guid Id(long msb, long lsb)
    {
        Span<byte> bytes = stackalloc byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes, msb);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes[8..], lsb);
        return new Guid(bytes, bigEndian: true);
    }

    public static (long Msb, long Lsb) Split(Guid id)
    {
        Span<byte> bytes = stackalloc byte[16];
        id.TryWriteBytes(bytes, bigEndian: true, out _);
        return (System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(bytes), System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(bytes[8..]));
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _call.RequestStream.CompleteAsync();
        }
        catch (Exception)
        {
        }
        _call.Dispose();
        try
        {
            await _reader.WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception)
        {
        }
        _channel.Dispose();
        _writeLock.Dispose();
    }
}
