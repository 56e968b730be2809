namespace Perf.Core;

/// <summary>
/// States of a persistent RPC (the reference's <c>RpcStatus</c>). Values are persisted: append only.
/// QUEUED -> SENT -> DELIVERED -> SUCCESSFUL; a one-way RPC ends at DELIVERED. QUEUED ends EXPIRED when
/// its expiration time passes, SENT/DELIVERED end TIMEOUT; SENT ends FAILED when no attempt was
/// acknowledged and the retries are used up; anything may be DELETED through the API.
/// </summary>
public enum PersistentRpcStatus : byte
{
    Queued = 0,
    Sent = 1,
    Delivered = 2,
    Successful = 3,
    Timeout = 4,
    Expired = 5,
    Failed = 6,
    Deleted = 7,
}

/// <summary>A persistent server-side RPC and its state.</summary>
/// <param name="RequestId">The per-device integer id the device echoes; unique per device across restarts.</param>
/// <param name="ParamsJson">Raw JSON text of params.</param>
/// <param name="Retries">Delivery attempts allowed after the first before the RPC is FAILED.</param>
/// <param name="Attempts">Delivery attempts made so far (QUEUED -> SENT transitions).</param>
/// <param name="ResponseJson">The device's reply body (two-way, SUCCESSFUL), as received.</param>
/// <param name="AdditionalInfoJson">The caller's additionalInfo, raw JSON.</param>
public sealed record PersistentRpc(
    Guid Id,
    Guid TenantId,
    Guid DeviceId,
    int RequestId,
    long CreatedTime,
    long ExpirationTime,
    string Method,
    string ParamsJson,
    bool OneWay,
    int Retries,
    int Attempts,
    PersistentRpcStatus Status,
    string? ResponseJson,
    string? AdditionalInfoJson,
    long UpdatedTime)
{
    /// <summary>True when no transition but DELETED can follow.</summary>
    public bool IsTerminal => IsTerminalStatus(Status, OneWay);

    public static bool IsTerminalStatus(PersistentRpcStatus status, bool oneWay) => status switch
    {
        PersistentRpcStatus.Queued or PersistentRpcStatus.Sent => false,
        PersistentRpcStatus.Delivered => oneWay,
        _ => true,
    };

    /// <summary>The state machine: whether <paramref name="from"/> may move to <paramref name="to"/>.</summary>
    public static bool IsAllowed(PersistentRpcStatus from, PersistentRpcStatus to, bool oneWay)
    {
        if (from == PersistentRpcStatus.Deleted)
        {
            return false;
        }
        if (to == PersistentRpcStatus.Deleted)
        {
            return true;
        }
        return from switch
        {
            PersistentRpcStatus.Queued => to is PersistentRpcStatus.Sent or PersistentRpcStatus.Expired or PersistentRpcStatus.Failed,
            // SENT -> QUEUED: the attempt was not acknowledged (session gone) and retries remain.
            // SENT -> SUCCESSFUL: the reply overtook the transport acknowledgement.
            // SENT -> SENT: re-sent to a newer session before the first one acknowledged (another attempt).
            PersistentRpcStatus.Sent => to is PersistentRpcStatus.Sent or PersistentRpcStatus.Delivered or PersistentRpcStatus.Queued
                or PersistentRpcStatus.Timeout or PersistentRpcStatus.Failed || (to == PersistentRpcStatus.Successful && !oneWay),
            PersistentRpcStatus.Delivered => !oneWay && to is (PersistentRpcStatus.Successful or PersistentRpcStatus.Timeout),
            _ => false,
        };
    }
}

/// <summary>
/// Durable store of persistent RPCs keyed by device id. Every mutation completes after it is durable.
/// The single-node implementation lives in the engine's log; a cluster-aware one may replace it.
/// Transitions are validated against <see cref="PersistentRpc.IsAllowed"/> when applied, so a late
/// reply cannot revive a DELETED or TIMEOUT RPC.
/// </summary>
public interface IPersistentRpcStore
{
    /// <summary>Allocates the next request id of a device (shared with lightweight RPCs; never reused for persistent ones).</summary>
    int NextRequestId(Guid deviceId);

    /// <summary>Stores a new RPC; null when the device no longer exists.</summary>
    Task<PersistentRpc?> AddAsync(PersistentRpc rpc);

    /// <summary>
    /// Moves an RPC to <paramref name="status"/> (a move to SENT counts an attempt); null when the RPC is
    /// unknown or the transition is not allowed from its state at the time it is applied.
    /// </summary>
    Task<PersistentRpc?> TransitionAsync(Guid rpcId, PersistentRpcStatus status, string? responseJson = null);

    /// <summary>Forgets RPCs (TTL clean-up); returns how many existed.</summary>
    Task<int> RemoveAsync(IReadOnlyCollection<Guid> rpcIds);

    PersistentRpc? Get(Guid rpcId);

    PersistentRpc? FindByRequestId(Guid deviceId, int requestId);

    /// <summary>Every RPC of a device, ordered by request id.</summary>
    IReadOnlyList<PersistentRpc> ListByDevice(Guid deviceId);

    /// <summary>Every RPC not yet terminal, of all devices.</summary>
    IEnumerable<PersistentRpc> Active { get; }

    /// <summary>Every RPC, of all devices (TTL clean-up).</summary>
    IEnumerable<PersistentRpc> All { get; }
}
