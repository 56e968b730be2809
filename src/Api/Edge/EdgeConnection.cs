using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Grpc.Core;
using Perf.Api.Edge.Protos;
using Perf.Core;

namespace Perf.Api.Edge;

/// <summary>
/// One accepted edge stream: serialises writes, runs the downlink pump (one downlink in flight,
/// resent every <see cref="EdgeOptions.DownlinkRetryMs"/> until its DownlinkResponseMsg or the attempt
/// limit) and owns the edge-backed device sessions.
/// </summary>
internal sealed class EdgeConnection
{
    private readonly EdgeHub _hub;
    private readonly IServerStreamWriter<ResponseMsg> _writer;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _closed;
    private readonly ConcurrentDictionary<Guid, EdgeDeviceSession> _sessions = new();
    private readonly object _ackLock = new();
    private int _awaitingId = -1;
    private TaskCompletionSource<DownlinkResponseMsg>? _ack;
    private long _rateWindowStart = Stopwatch.GetTimestamp();
    private int _rateCount;

    public EdgeConnection(EdgeHub hub, Perf.Core.Domain.Edge edge, int edgeVersion, int edgeMaxInbound, string peer,
        IServerStreamWriter<ResponseMsg> writer, CancellationToken callAborted)
    {
        _hub = hub;
        Edge = edge;
        EdgeVersion = edgeVersion;
        EdgeMaxInbound = edgeMaxInbound;
        Description = $"edge:{edge.Name}@{peer}";
        _writer = writer;
        _closed = CancellationTokenSource.CreateLinkedTokenSource(callAborted);
    }

    public Perf.Core.Domain.Edge Edge { get; }

    public Guid EdgeId => Edge.Id;

    public int EdgeVersion { get; }

    public int EdgeMaxInbound { get; }

    public string Description { get; }

    public bool IsClosed => _closed.IsCancellationRequested;

    public CancellationToken Closed => _closed.Token;

    /// <summary>Seq of a queued full sync's syncCompletedMsg not yet handled; a repeated full-sync request meanwhile is redundant.</summary>
    public long PendingSyncCompletedSeq;

    /// <summary>1 while the full sync queued at the edge's first connect stands for the sync request the edge sends itself right after.</summary>
    public int FirstConnectSync;

    public void Close()
    {
        try
        {
            _closed.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public void Wake() => _wake.Writer.TryWrite(true);

    public async Task WriteAsync(ResponseMsg msg)
    {
        await _writeLock.WaitAsync(_closed.Token);
        try
        {
            await _writer.WriteAsync(msg, _closed.Token);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Fixed one-second window: cheap and enough to answer a flooding edge with success=false.</summary>
    public bool TryTakeUplinkSlot()
    {
        var limit = _hub.Options.UplinkRateLimit;
        if (limit <= 0)
        {
            return true;
        }
        lock (_ackLock)
        {
            if (Stopwatch.GetElapsedTime(_rateWindowStart) >= TimeSpan.FromSeconds(1))
            {
                _rateWindowStart = Stopwatch.GetTimestamp();
                _rateCount = 0;
            }
            return ++_rateCount <= limit;
        }
    }

    // ---------------------------------------------------------------- device sessions

    public void RegisterSessions()
    {
        foreach (var deviceId in _hub.Engine.Edges.AssignedDevices(EdgeId))
        {
            AddDevice(deviceId);
        }
    }

    public void AddDevice(Guid deviceId)
    {
        if (IsClosed)
        {
            return;
        }
        var session = new EdgeDeviceSession(this, deviceId);
        if (_sessions.TryAdd(deviceId, session))
        {
            _hub.Engine.Sessions.Register(session);
        }
    }

    public void RemoveDevice(Guid deviceId)
    {
        if (_sessions.TryRemove(deviceId, out var session))
        {
            _hub.Engine.Sessions.Unregister(session);
        }
    }

    public void UnregisterSessions()
    {
        foreach (var deviceId in _sessions.Keys)
        {
            RemoveDevice(deviceId);
        }
    }

    /// <summary>The core hands an RPC for a device behind this edge: it joins the durable queue.</summary>
    public bool PushRpc(Guid deviceId, RpcRequest request)
    {
        if (IsClosed)
        {
            return false;
        }
        var queued = _hub.QueueRpcAsync(EdgeId, deviceId, request);
        queued.ContinueWith(t => EdgeLog.EventFailed(_hub.Logger, EdgeId, deviceId, t.Exception!), CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        return true;
    }

    // ---------------------------------------------------------------- downlinks

    public void OnDownlinkResponse(DownlinkResponseMsg response)
    {
        lock (_ackLock)
        {
            if (response.DownlinkMsgId == _awaitingId)
            {
                _ack?.TrySetResult(response);
            }
        }
    }

    /// <summary>Delivers the edge's queue in order until the stream ends.</summary>
    public async Task PumpAsync()
    {
        var queues = _hub.Engine.Edges;
        var ct = _closed.Token;
        long cursor = 0;
        try
        {
            while (!ct.IsCancellationRequested)
            {
                if (!queues.TryGetNext(EdgeId, cursor, out var downlink))
                {
                    await _wake.Reader.ReadAsync(ct);
                    continue;
                }
                cursor = downlink.Seq;
                var (error, rpcs) = await DeliverAsync(downlink, ct);
                if (error is not null)
                {
                    EdgeLog.DownlinkFailed(_hub.Logger, EdgeId, downlink.Seq, error);
                }
                else if (rpcs is not null)
                {
                    foreach (var call in rpcs)
                    {
                        _hub.Engine.Rpc.OnDelivered(EdgeProto.Join(call.DeviceIdMSB, call.DeviceIdLSB), call.RequestId);
                    }
                }
                if (Interlocked.Read(ref PendingSyncCompletedSeq) == downlink.Seq)
                {
                    Interlocked.Exchange(ref PendingSyncCompletedSeq, 0);
                }
                // Not awaited: the cursor already moved past it, and the removal commits with the next batch.
                _ = queues.CompleteAsync(EdgeId, downlink.Seq, error);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            EdgeLog.StreamFailed(_hub.Logger, EdgeId, e);
            Close();
        }
    }

    private static bool IsExpiredRpc(DownlinkMsg msg)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        foreach (var call in msg.DeviceRpcCallMsg)
        {
            if (call.RequestMsg is null || call.ExpirationTime == 0 || call.ExpirationTime > now)
            {
                return false;
            }
        }
        return msg.DeviceUpdateMsg.Count == 0 && msg.EntityData.Count == 0;
    }

    /// <summary>Error is null when acknowledged, else why the downlink was given up on; Rpcs are the RPC requests it carried.</summary>
    private async Task<(string? Error, IReadOnlyList<DeviceRpcCallMsg>? Rpcs)> DeliverAsync(EdgeDownlink downlink, CancellationToken ct)
    {
        ResponseMsg envelope;
        try
        {
            var msg = DownlinkMsg.Parser.ParseFrom(downlink.Payload);
            msg.DownlinkMsgId = unchecked((int)downlink.Seq);
            envelope = new ResponseMsg { DownlinkMsg = msg };
        }
        catch (Exception e)
        {
            return ("undecodable downlink: " + e.Message, null);
        }
        if (envelope.DownlinkMsg.DeviceRpcCallMsg.Count > 0 && IsExpiredRpc(envelope.DownlinkMsg))
        {
            // The caller already got its timeout; an RPC that waited in the queue past its expiry is not run late.
            return ("RPC request expired before delivery", null);
        }
        var size = envelope.CalculateSize();
        if (size > EdgeMaxInbound)
        {
            return ($"downlink of {size} bytes exceeds the edge's maxInboundMessageSize of {EdgeMaxInbound} bytes; " +
                "raise the edge's CLOUD_RPC_MAX_INBOUND_MESSAGE_SIZE", null);
        }

        var options = _hub.Options;
        string? refused = null;
        for (var attempt = 1; attempt <= options.DownlinkAttempts; attempt++)
        {
            var ack = new TaskCompletionSource<DownlinkResponseMsg>(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_ackLock)
            {
                _awaitingId = envelope.DownlinkMsg.DownlinkMsgId;
                _ack = ack;
            }
            await WriteAsync(envelope);
            EdgeMetrics.Downlink(size);
            try
            {
                var response = await ack.Task.WaitAsync(TimeSpan.FromMilliseconds(options.DownlinkRetryMs), ct);
                if (response.Success)
                {
                    return (null, envelope.DownlinkMsg.DeviceRpcCallMsg.Where(c => c.RequestMsg is not null).ToArray());
                }

                // As the reference's onDownlinkResponse: a failure leaves the downlink pending, sent again after the
                // retry interval (a failure the edge recovers from must not lose the update until the next full sync).
                refused = response.ErrorMsg;
                if (attempt < options.DownlinkAttempts)
                {
                    await Task.Delay(options.DownlinkRetryMs, ct);
                }
            }
            catch (TimeoutException)
            {
            }
        }
        return (refused is null
            ? $"no DownlinkResponseMsg after {options.DownlinkAttempts} attempts"
            : $"the edge answered failure to the last of {options.DownlinkAttempts} attempts: {refused}", null);
    }
}
