using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Perf.Core.Domain;
using Perf.Core.Internal;

namespace Perf.Core;

public enum RpcStatus : byte
{
    /// <summary>Two-way: the device replied. One-way: the request was delivered to a session.</summary>
    Success = 0,
    /// <summary>Delivered, but no reply before the timeout.</summary>
    Timeout,
    /// <summary>No session took the request before the timeout.</summary>
    DeviceOffline,
    /// <summary>The device already has the maximum number of pending RPCs.</summary>
    TooManyRequests,
    /// <summary>The device does not exist.</summary>
    NotFound,
    /// <summary>An edge answered for its device that no connection of the device took the request (the reference's NO_ACTIVE_CONNECTION).</summary>
    NoActiveConnection,
}

/// <summary>Outcome of a server-side RPC; <see cref="ResponseJson"/> is the device's reply body for a two-way success.</summary>
public readonly record struct RpcOutcome(RpcStatus Status, string? ResponseJson = null)
{
    public static RpcOutcome Success(string? responseJson) => new(RpcStatus.Success, responseJson);
}

/// <summary>
/// Handles a client-side RPC that is not a built-in: returns the JSON reply body for the device.
/// </summary>
public delegate ValueTask<string> ClientRpcHandler(Device device, string method, string paramsJson, CancellationToken cancellationToken);

/// <summary>
/// Server-side RPC, the single-node implementation of <see cref="IRpcService"/>.
/// <para>
/// Lightweight requests get a per-device integer id, wait in memory for a live session that wants RPCs
/// (delivered immediately when one exists, else as soon as one registers or subscribes, as the
/// reference does), and complete on the device's reply, on delivery when one-way, or at the timeout.
/// </para>
/// <para>
/// Persistent requests live in an <see cref="IPersistentRpcStore"/> and follow the reference's state
/// machine (see <see cref="PersistentRpcStatus"/>). Delivery to a device is serialized per device; a
/// QUEUED request (or a SENT one whose session is gone, e.g. after a restart) is sent when a session that
/// wants RPCs is available. DELIVERED is reported by the door through <see cref="OnDelivered"/> when
/// the session says so (<see cref="IDeviceSession.ReportsRpcDelivery"/>, MQTT QoS 1 PUBACK); otherwise
/// an accepted push counts as delivered. A sweep moves requests past their expiration time to EXPIRED
/// (never sent) or TIMEOUT (sent), and a slower one removes terminal requests older than the TTL.
/// </para>
/// </summary>
public sealed class RpcService : IRpcService
{
    private readonly ISessionTable _sessions;
    private readonly CoreOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly IPersistentRpcStore _store;
    private readonly ConcurrentDictionary<Guid, DeviceRpcState> _devices = new();
    private readonly ConcurrentDictionary<Guid, SemaphoreSlim> _dispatchGates = new();
    // Which live session a SENT request went to: a SENT request whose session is gone is re-sent.
    private readonly ConcurrentDictionary<Guid, IDeviceSession> _sentTo = new();
    private ITimer? _expiryTimer;
    private ITimer? _cleanupTimer;
    private int _sweeping;

    internal RpcService(ISessionTable sessions, IPersistentRpcStore store, CoreOptions options, TimeProvider time, ILogger logger)
    {
        _sessions = sessions;
        _store = store;
        _options = options;
        _time = time;
        _logger = logger;
        _sessions.SessionAvailable += OnSessionAvailable;
    }

    /// <summary>Handler of client-side RPCs other than the built-ins; without one the device gets <c>{"error":"no handler for method 'x'"}</c>.</summary>
    public ClientRpcHandler? ClientRpcHandler { get; set; }

    /// <summary>The durable store behind persistent RPCs.</summary>
    public IPersistentRpcStore Store => _store;

    private long Now => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Raised after a persistent request was stored or changed state (durable by then), from any thread.</summary>
    public event Action<PersistentRpc>? PersistentRpcChanged;

    private async Task<PersistentRpc?> MoveAsync(Guid rpcId, PersistentRpcStatus status, string? responseJson = null)
    {
        var moved = await _store.TransitionAsync(rpcId, status, responseJson);
        if (moved is not null)
        {
            CoreMetrics.PersistentRpc(status);
            Changed(moved);
        }
        return moved;
    }

    private void Changed(PersistentRpc rpc)
    {
        try
        {
            PersistentRpcChanged?.Invoke(rpc);
        }
        catch (Exception e)
        {
            CoreLog.SubscriberFailed(_logger, rpc.DeviceId, e);
        }
    }

    /// <summary>Pending (undelivered or unanswered) lightweight requests of a device.</summary>
    public int PendingCount(Guid deviceId) => _devices.TryGetValue(deviceId, out var state) ? state.Pending.Count : 0;

    /// <summary>
    /// Sends a lightweight request and waits for its outcome (the metric is recorded at each outcome here, in the one
    /// async method, rather than by a wrapper awaiting it: a second state machine box per call, issue 12 row 7).
    /// </summary>
    public async Task<RpcOutcome> SendAsync(Guid deviceId, string method, string paramsJson, bool oneWay, int timeoutMs, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(method);
        var state = _devices.GetOrAdd(deviceId, static _ => new DeviceRpcState());
        if (Interlocked.Increment(ref state.PendingSlots) > _options.MaxPendingRpcPerDevice)
        {
            Interlocked.Decrement(ref state.PendingSlots);
            return CoreMetrics.Rpc(new RpcOutcome(RpcStatus.TooManyRequests));
        }

        // One id space per device for both kinds, so a reply always finds the right request.
        var requestId = _store.NextRequestId(deviceId);
        var expiration = Now + timeoutMs;
        var call = new PendingCall(new RpcRequest(requestId, Guid.NewGuid(), method, string.IsNullOrEmpty(paramsJson) ? "{}" : paramsJson,
            oneWay, expiration, Persistent: false));
        state.Pending[requestId] = call;
        try
        {
            TryDeliver(deviceId, call);
            try
            {
                return CoreMetrics.Rpc(await call.Completion.Task.WaitAsync(TimeSpan.FromMilliseconds(Math.Max(0, timeoutMs)), _time, cancellationToken));
            }
            catch (TimeoutException)
            {
                return CoreMetrics.Rpc(new RpcOutcome(Volatile.Read(ref call.Delivered) != 0 ? RpcStatus.Timeout : RpcStatus.DeviceOffline));
            }
        }
        finally
        {
            state.Pending.TryRemove(requestId, out _);
            Interlocked.Decrement(ref state.PendingSlots);
        }
    }

    /// <summary>The device's reply to <paramref name="requestId"/>; false when no such request is pending. A persistent reply is recorded asynchronously.</summary>
    public bool CompleteReply(Guid deviceId, int requestId, string responseJson)
    {
        if (CompleteLightweight(deviceId, requestId, responseJson))
        {
            return true;
        }
        if (FindAwaitingReply(deviceId, requestId) is not { } rpc)
        {
            return false;
        }
        Observe(CompletePersistentAsync(rpc, responseJson), deviceId);
        return true;
    }

    public async ValueTask<bool> CompleteReplyAsync(Guid deviceId, int requestId, string responseJson)
    {
        if (CompleteLightweight(deviceId, requestId, responseJson))
        {
            return true;
        }
        return FindAwaitingReply(deviceId, requestId) is { } rpc && await CompletePersistentAsync(rpc, responseJson);
    }

    /// <summary>
    /// A failure reported for <paramref name="requestId"/> instead of a reply (an edge whose device did not answer, or
    /// was not connected): the caller gets <paramref name="status"/>; a persistent request becomes TIMEOUT for
    /// <see cref="RpcStatus.Timeout"/>, else FAILED. False when no such request is pending.
    /// </summary>
    public bool CompleteFailure(Guid deviceId, int requestId, RpcStatus status, string error)
    {
        if (_devices.TryGetValue(deviceId, out var state) && state.Pending.TryGetValue(requestId, out var call) &&
            call.Completion.TrySetResult(new RpcOutcome(status)))
        {
            return true;
        }
        if (FindAwaitingReply(deviceId, requestId) is not { } rpc)
        {
            return false;
        }
        Observe(FailPersistentAsync(rpc, status == RpcStatus.Timeout ? PersistentRpcStatus.Timeout : PersistentRpcStatus.Failed, error), deviceId);
        return true;
    }

    private async Task FailPersistentAsync(PersistentRpc rpc, PersistentRpcStatus status, string error)
    {
        await MoveAsync(rpc.Id, status, System.Text.Json.JsonSerializer.Serialize(new { error }));
        Finished(rpc);
    }

    private bool CompleteLightweight(Guid deviceId, int requestId, string responseJson) =>
        _devices.TryGetValue(deviceId, out var state) &&
        state.Pending.TryGetValue(requestId, out var call) &&
        call.Completion.TrySetResult(RpcOutcome.Success(responseJson));

    private PersistentRpc? FindAwaitingReply(Guid deviceId, int requestId) =>
        _store.FindByRequestId(deviceId, requestId) is { OneWay: false, Status: PersistentRpcStatus.Sent or PersistentRpcStatus.Delivered } rpc ? rpc : null;

    private async Task<bool> CompletePersistentAsync(PersistentRpc rpc, string responseJson)
    {
        var done = await MoveAsync(rpc.Id, PersistentRpcStatus.Successful, responseJson);
        Finished(rpc);
        return done is not null;
    }

    /// <summary>
    /// A door reports that the transport acknowledged the request it pushed (MQTT PUBACK for QoS 1):
    /// a SENT persistent request becomes DELIVERED (final for one-way).
    /// </summary>
    public void OnDelivered(Guid deviceId, int requestId)
    {
        if (_store.FindByRequestId(deviceId, requestId) is { Status: PersistentRpcStatus.Sent } rpc)
        {
            Observe(MarkDeliveredAsync(rpc), deviceId);
        }
    }

    private async Task MarkDeliveredAsync(PersistentRpc rpc)
    {
        var delivered = await MoveAsync(rpc.Id, PersistentRpcStatus.Delivered);
        if (delivered is { IsTerminal: true })
        {
            Finished(rpc);
        }
    }

    /// <summary>
    /// Stores a persistent request (durable when the task completes) and starts its delivery when a
    /// session is there. Null when the device does not exist.
    /// </summary>
    /// <param name="expirationTime">Unix ms after which an undelivered request is EXPIRED and an unanswered one TIMEOUT.</param>
    /// <param name="retries">Delivery attempts after the first; null: <see cref="CoreOptions.RpcMaxRetries"/>.</param>
    public async Task<PersistentRpc?> SubmitPersistentAsync(
        Device device, string method, string paramsJson, bool oneWay, long expirationTime, int? retries, string? additionalInfoJson)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentException.ThrowIfNullOrEmpty(method);
        var now = Now;
        var rpc = new PersistentRpc(Guid.NewGuid(), device.TenantId, device.Id, _store.NextRequestId(device.Id), now, expirationTime, method,
            string.IsNullOrEmpty(paramsJson) ? "{}" : paramsJson, oneWay, Math.Max(0, retries ?? _options.RpcMaxRetries), 0,
            PersistentRpcStatus.Queued, null, additionalInfoJson, now);
        var stored = await _store.AddAsync(rpc);
        if (stored is not null)
        {
            CoreMetrics.PersistentRpc(PersistentRpcStatus.Queued);
            Changed(stored);
            Kick(device.Id);
        }
        return stored;
    }

    public PersistentRpc? GetPersistent(Guid rpcId) => _store.Get(rpcId);

    public IReadOnlyList<PersistentRpc> ListPersistent(Guid deviceId) => _store.ListByDevice(deviceId);

    /// <summary>Marks a persistent request DELETED (an active one is cancelled: it is never sent again and its reply is ignored). Null when unknown or already deleted.</summary>
    public async Task<PersistentRpc?> DeletePersistentAsync(Guid rpcId)
    {
        if (_store.Get(rpcId) is not { } rpc)
        {
            return null;
        }
        var deleted = await MoveAsync(rpcId, PersistentRpcStatus.Deleted);
        if (deleted is not null)
        {
            Finished(rpc);
        }
        return deleted;
    }

    // ---------------------------------------------------------------- delivery

    private void OnSessionAvailable(IDeviceSession session)
    {
        if (!session.WantsRpc)
        {
            return;
        }
        if (_devices.TryGetValue(session.DeviceId, out var state) && !state.Pending.IsEmpty)
        {
            foreach (var call in state.Pending.Values.OrderBy(c => c.Request.RequestId))
            {
                TryDeliver(session.DeviceId, call);
            }
        }
        Kick(session.DeviceId);
    }

    private void TryDeliver(Guid deviceId, PendingCall call)
    {
        foreach (var session in _sessions.GetSessions(deviceId))
        {
            if (!session.WantsRpc)
            {
                continue;
            }
            // Claim the call first so two sessions appearing at once cannot both get it.
            if (Interlocked.CompareExchange(ref call.Delivered, 1, 0) != 0)
            {
                return;
            }
            if (Push(session, call.Request))
            {
                if (call.Request.OneWay)
                {
                    call.Completion.TrySetResult(RpcOutcome.Success(null));
                }
                return;
            }
            Volatile.Write(ref call.Delivered, 0);
        }
    }

    private bool Push(IDeviceSession session, RpcRequest request)
    {
        try
        {
            return session.PushRpcRequest(request);
        }
        catch (Exception e)
        {
            CoreLog.PushFailed(_logger, session.ConnectionId, e);
            return false;
        }
    }

    /// <summary>Starts a delivery pass for the device's persistent requests (off the caller's thread).</summary>
    private void Kick(Guid deviceId) => Observe(Task.Run(() => DispatchAsync(deviceId)), deviceId);

    private void Finished(PersistentRpc rpc)
    {
        _sentTo.TryRemove(rpc.Id, out _);
        if (_options.RpcSequentialDelivery)
        {
            Kick(rpc.DeviceId);
        }
    }

    private async Task DispatchAsync(Guid deviceId)
    {
        var gate = _dispatchGates.GetOrAdd(deviceId, static _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync();
        try
        {
            var now = Now;
            foreach (var rpc in _store.ListByDevice(deviceId))
            {
                if (rpc.IsTerminal || rpc.Status == PersistentRpcStatus.Deleted)
                {
                    continue;
                }
                if (rpc.ExpirationTime <= now)
                {
                    await ExpireAsync(rpc);
                    continue;
                }
                var awaiting = rpc.Status == PersistentRpcStatus.Delivered ||
                    (rpc.Status == PersistentRpcStatus.Sent && _sentTo.TryGetValue(rpc.Id, out var sentTo) && IsLive(sentTo));
                if (awaiting)
                {
                    if (_options.RpcSequentialDelivery)
                    {
                        return;
                    }
                    continue;
                }
                if (!await SendPersistentAsync(rpc) || _options.RpcSequentialDelivery)
                {
                    return;
                }
            }
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>One delivery attempt; false when there is no session to take it or the push was refused.</summary>
    private async Task<bool> SendPersistentAsync(PersistentRpc rpc)
    {
        if (rpc.Attempts >= 1 + rpc.Retries)
        {
            await MoveAsync(rpc.Id, PersistentRpcStatus.Failed);
            Finished(rpc);
            return true;
        }
        IDeviceSession? session = null;
        foreach (var candidate in _sessions.GetSessions(rpc.DeviceId))
        {
            if (candidate.WantsRpc)
            {
                session = candidate;
                break;
            }
        }
        if (session is null)
        {
            return false;
        }

        var reportsDelivery = session.ReportsRpcDelivery;
        _sentTo[rpc.Id] = session;
        // SENT is durable and visible before the push, so the door's acknowledgement or the device's reply,
        // however fast, finds the request SENT (one commit interval of latency per attempt).
        var sent = await MoveAsync(rpc.Id, PersistentRpcStatus.Sent);
        if (sent is null)
        {
            _sentTo.TryRemove(rpc.Id, out _);
            return true;
        }
        var pushed = Push(session, new RpcRequest(rpc.RequestId, rpc.Id, rpc.Method, rpc.ParamsJson, rpc.OneWay, rpc.ExpirationTime, Persistent: true));
        if (!pushed)
        {
            _sentTo.TryRemove(rpc.Id, out _);
            var exhausted = sent.Attempts >= 1 + sent.Retries;
            await MoveAsync(rpc.Id, exhausted ? PersistentRpcStatus.Failed : PersistentRpcStatus.Queued);
            if (exhausted)
            {
                Finished(rpc);
            }
            return false;
        }
        if (!reportsDelivery)
        {
            await MarkDeliveredAsync(sent);
        }
        return true;
    }

    private bool IsLive(IDeviceSession session)
    {
        foreach (var live in _sessions.GetSessions(session.DeviceId))
        {
            if (ReferenceEquals(live, session))
            {
                return true;
            }
        }
        return false;
    }

    private async Task ExpireAsync(PersistentRpc rpc)
    {
        await MoveAsync(rpc.Id, rpc.Status == PersistentRpcStatus.Queued ? PersistentRpcStatus.Expired : PersistentRpcStatus.Timeout);
        Finished(rpc);
    }

    // ---------------------------------------------------------------- maintenance

    /// <summary>Starts the expiry sweep and the TTL clean-up (after recovery).</summary>
    internal void Start()
    {
        var expiry = TimeSpan.FromMilliseconds(Math.Max(10, _options.RpcExpiryCheckIntervalMs));
        _expiryTimer = _time.CreateTimer(_ => Observe(SweepExpiredAsync(), Guid.Empty), null, expiry, expiry);
        if (_options.PersistentRpcTtlMs > 0)
        {
            var cleanup = TimeSpan.FromMilliseconds(Math.Max(1000, _options.RpcTtlCheckIntervalMs));
            _cleanupTimer = _time.CreateTimer(_ => Observe(CleanupAsync(), Guid.Empty), null, cleanup, cleanup);
        }
    }

    internal void Stop()
    {
        _expiryTimer?.Dispose();
        _cleanupTimer?.Dispose();
    }

    /// <summary>Moves every active request past its expiration time to EXPIRED or TIMEOUT; returns how many.</summary>
    internal async Task<int> SweepExpiredAsync()
    {
        if (Interlocked.Exchange(ref _sweeping, 1) != 0)
        {
            return 0;
        }
        try
        {
            var now = Now;
            var expired = 0;
            foreach (var rpc in _store.Active.Where(r => r.ExpirationTime <= now).ToArray())
            {
                await ExpireAsync(rpc);
                expired++;
            }
            return expired;
        }
        finally
        {
            Volatile.Write(ref _sweeping, 0);
        }
    }

    /// <summary>Removes terminal requests that reached their final state more than <see cref="CoreOptions.PersistentRpcTtlMs"/> ago.</summary>
    internal Task<int> CleanupAsync()
    {
        var before = Now - _options.PersistentRpcTtlMs;
        var old = _store.All.Where(r => r.IsTerminal && r.UpdatedTime < before).Select(r => r.Id).ToArray();
        return _store.RemoveAsync(old);
    }

    /// <summary>The device was deleted (apply thread): forget its in-memory delivery state.</summary>
    internal void RemoveDevice(Guid deviceId)
    {
        _dispatchGates.TryRemove(deviceId, out _);
        _devices.TryRemove(deviceId, out _);
    }

    private void Observe(Task task, Guid deviceId)
    {
        if (task.IsCompletedSuccessfully)
        {
            return;
        }
        task.ContinueWith(static (t, state) =>
        {
            var (logger, id) = ((ILogger, Guid))state!;
            CoreLog.RpcDispatchFailed(logger, id, t.Exception!.GetBaseException());
        }, (_logger, deviceId), CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private sealed class DeviceRpcState
    {
        public int PendingSlots;
        public readonly ConcurrentDictionary<int, PendingCall> Pending = new();
    }

    private sealed class PendingCall(RpcRequest request)
    {
        public readonly RpcRequest Request = request;
        // Continuations run inline on the thread that completes the call (the device's read loop delivering the
        // reply, or the delivering thread for one-way): the waiting REST call then writes its answer from there
        // instead of after a thread-pool hop. Issue 12 target 7: on this 2-core VM a hop is a context switch, and
        // context switches were a quarter of the server's samples at the RPC max rate. Nothing holds a lock
        // while completing a call (CompleteLightweight, TryDeliver), so the inline continuation cannot deadlock.
        public readonly TaskCompletionSource<RpcOutcome> Completion = new();
        public int Delivered;
    }
}
