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
/// Lightweight (in-memory, non-persistent) server-side RPC. A request gets a per-device integer id,
/// waits in memory for a live session that wants RPCs (delivered immediately when one exists, else as
/// soon as one registers or subscribes, as the reference does), and completes on the device's reply,
/// on delivery when one-way, or at the timeout. Persistent RPC will plug in behind <see cref="SendAsync"/>
/// (a durable queue keyed by device id feeding the same delivery path).
/// </summary>
public sealed class RpcService
{
    private readonly ISessionTable _sessions;
    private readonly CoreOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<Guid, DeviceRpcState> _devices = new();

    internal RpcService(ISessionTable sessions, CoreOptions options, TimeProvider time, ILogger logger)
    {
        _sessions = sessions;
        _options = options;
        _time = time;
        _logger = logger;
        _sessions.SessionAvailable += OnSessionAvailable;
    }

    /// <summary>Handler of client-side RPCs other than the built-ins; without one the device gets <c>{"error":"no handler for method 'x'"}</c>.</summary>
    public ClientRpcHandler? ClientRpcHandler { get; set; }

    /// <summary>Pending (undelivered or unanswered) requests of a device.</summary>
    public int PendingCount(Guid deviceId) => _devices.TryGetValue(deviceId, out var state) ? state.Pending.Count : 0;

    public async Task<RpcOutcome> SendAsync(Guid deviceId, string method, string paramsJson, bool oneWay, int timeoutMs, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(method);
        var state = _devices.GetOrAdd(deviceId, static _ => new DeviceRpcState());
        if (Interlocked.Increment(ref state.PendingSlots) > _options.MaxPendingRpcPerDevice)
        {
            Interlocked.Decrement(ref state.PendingSlots);
            return new RpcOutcome(RpcStatus.TooManyRequests);
        }

        var requestId = Interlocked.Increment(ref state.NextRequestId);
        var expiration = _time.GetUtcNow().ToUnixTimeMilliseconds() + timeoutMs;
        var call = new PendingCall(new RpcRequest(requestId, Guid.NewGuid(), method, string.IsNullOrEmpty(paramsJson) ? "{}" : paramsJson,
            oneWay, expiration, Persistent: false));
        state.Pending[requestId] = call;
        try
        {
            TryDeliver(deviceId, call);
            try
            {
                return await call.Completion.Task.WaitAsync(TimeSpan.FromMilliseconds(Math.Max(0, timeoutMs)), _time, cancellationToken);
            }
            catch (TimeoutException)
            {
                return new RpcOutcome(Volatile.Read(ref call.Delivered) != 0 ? RpcStatus.Timeout : RpcStatus.DeviceOffline);
            }
        }
        finally
        {
            state.Pending.TryRemove(requestId, out _);
            Interlocked.Decrement(ref state.PendingSlots);
        }
    }

    /// <summary>The device's reply to <paramref name="requestId"/>; false when no such request is pending.</summary>
    public bool CompleteReply(Guid deviceId, int requestId, string responseJson) =>
        _devices.TryGetValue(deviceId, out var state) &&
        state.Pending.TryGetValue(requestId, out var call) &&
        call.Completion.TrySetResult(RpcOutcome.Success(responseJson));

    private void OnSessionAvailable(IDeviceSession session)
    {
        if (!session.WantsRpc || !_devices.TryGetValue(session.DeviceId, out var state) || state.Pending.IsEmpty)
        {
            return;
        }
        foreach (var call in state.Pending.Values.OrderBy(c => c.Request.RequestId))
        {
            TryDeliver(session.DeviceId, call);
        }
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
            bool pushed;
            try
            {
                pushed = session.PushRpcRequest(call.Request);
            }
            catch (Exception e)
            {
                CoreLog.PushFailed(_logger, session.ConnectionId, e);
                pushed = false;
            }
            if (pushed)
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

    private sealed class DeviceRpcState
    {
        public int NextRequestId;
        public int PendingSlots;
        public readonly ConcurrentDictionary<int, PendingCall> Pending = new();
    }

    private sealed class PendingCall(RpcRequest request)
    {
        public readonly RpcRequest Request = request;
        public readonly TaskCompletionSource<RpcOutcome> Completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Delivered;
    }
}
