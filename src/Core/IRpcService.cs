using Perf.Core.Domain;

namespace Perf.Core;

/// <summary>
/// Server-side RPC as the REST API and the doors see it, keyed by device id. The single-node
/// implementation is <see cref="RpcService"/>; a cluster-aware one (routing to the node that holds the
/// device's session) may replace it without touching the doors.
/// </summary>
public interface IRpcService
{
    /// <summary>A lightweight (in-memory) request: waits for delivery, and for two-way the reply, up to <paramref name="timeoutMs"/>.</summary>
    Task<RpcOutcome> SendAsync(Guid deviceId, string method, string paramsJson, bool oneWay, int timeoutMs, CancellationToken cancellationToken);

    /// <summary>Stores a persistent request (durable on completion); null when the device does not exist.</summary>
    Task<PersistentRpc?> SubmitPersistentAsync(Device device, string method, string paramsJson, bool oneWay, long expirationTime, int? retries, string? additionalInfoJson);

    PersistentRpc? GetPersistent(Guid rpcId);

    /// <summary>Every persistent request of a device, ordered by request id.</summary>
    IReadOnlyList<PersistentRpc> ListPersistent(Guid deviceId);

    /// <summary>Cancels and marks DELETED; null when unknown or already deleted.</summary>
    Task<PersistentRpc?> DeletePersistentAsync(Guid rpcId);

    /// <summary>The device's reply; false when no request with this id awaits one. Completes once the outcome is recorded.</summary>
    ValueTask<bool> CompleteReplyAsync(Guid deviceId, int requestId, string responseJson);

    /// <summary>Raised after a persistent request was stored or changed state (durable by then), from any thread.</summary>
    event Action<PersistentRpc>? PersistentRpcChanged;

    /// <summary>The transport acknowledged the request (see <see cref="IDeviceSession.ReportsRpcDelivery"/>).</summary>
    void OnDelivered(Guid deviceId, int requestId);
}
