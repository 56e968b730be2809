namespace Perf.Core;

/// <summary>
/// Settings of the core engine.
/// </summary>
/// <remarks>
/// Durability policy: every mutation is appended to a FASTER <c>FasterLog</c> on a local storage
/// device under <see cref="DataDir"/>/log. Group commits run one at a time: each commits all records queued
/// since the previous one and waits for it, and an uplink is acknowledged only after the commit that holds its
/// record completed. The log's commit thread commits at most every <see cref="CommitIntervalMs"/> milliseconds;
/// the MQTT door's epoll thread commits the uplinks of each batch of socket events itself, right after the batch
/// (<see cref="CommitRounds"/>; it reads nothing while the commit runs, so its batches grow with the load).
/// With <see cref="FsyncOnCommit"/> (default) the log device is opened write-through (FASTER also asks for no
/// buffering, which .NET ignores on Linux: the file is opened <c>O_SYNC</c>, so each write returns once it is
/// on the disk), so a completed commit survives power loss as far as the disk honours write-through;
/// without it the log's writes go through the OS page cache (the log device's own handles, opened without
/// write-through: FASTER's device would open them write-through either way), which survives a killed process
/// (kill -9) but not a power cut.
/// <para>What is where under <see cref="DataDir"/>:
/// <c>log/</c> the uplink log (FasterLog), every acknowledged mutation since the last checkpoint;
/// <c>kv/</c> the FasterKV state store of record (<c>kv/hlog.log*</c> hybrid log, <c>kv/checkpoints/</c>
/// FASTER checkpoints): tenants, customers, users, devices with their access tokens (the token index),
/// edges, OTA package metadata, attributes (CLIENT, SHARED, SERVER, each with lastUpdateTs), latest
/// telemetry, telemetry history in chunks of 512 points per device and key, persistent RPCs and RPC
/// request-id sequences, and the uplink log address the checkpointed state is consistent with;
/// <c>ota/</c> OTA package bytes. A <c>snapshot.bin</c> left by an older version is loaded once when the
/// store has no checkpoint yet and deleted by the first checkpoint. The process serves reads from memory,
/// loaded at open from the last FasterKV checkpoint plus a replay of the uplink log after it.</para>
/// </remarks>
public sealed class CoreOptions
{
    /// <summary>Root of all persistent state (uplink log, FasterKV state store, OTA files; see the class remarks). Default <c>./data</c>.</summary>
    public string DataDir { get; set; } = "./data";

    /// <summary>Minimum spacing of the commit thread's group commits in milliseconds (not of the MQTT door's; see the class remarks). Default 2.</summary>
    public int CommitIntervalMs { get; set; } = 2;

    /// <summary>Write-through log I/O (see the class remarks). Default true.</summary>
    public bool FsyncOnCommit { get; set; } = true;

    /// <summary>
    /// After a failed write of the uplink log (a full or failing disk), uplinks are refused and the log is opened
    /// again at most this often, on the next uplink, until it works. Default 1 s.
    /// </summary>
    public TimeSpan LogReopenInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Test seam: wraps the uplink log's device (a device that fails its writes on demand).</summary>
    internal Func<FASTER.core.IDevice, FASTER.core.IDevice>? WrapLogDevice { get; set; }

    /// <summary>
    /// A new uplink log is written with fast commits (the commit record goes into the log with the records
    /// it covers, per-entry checksums); a log written before them keeps its format. False creates a new log
    /// in that older format: the seam that lets tests build one.
    /// </summary>
    internal bool FastCommitForNewLog { get; set; } = true;

    /// <summary>
    /// How long disposal waits for the last checkpoint (and one still persisting) before closing without it; the
    /// uplink log is then kept whole and replayed at the next start. FASTER never completes a checkpoint whose
    /// files cannot be created (the data directory deleted or unwritable), so without a bound the process would
    /// not stop. Default 30 s.
    /// </summary>
    internal TimeSpan ShutdownCheckpointTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Days of telemetry history kept; 0 keeps it forever.</summary>
    public int TelemetryRetentionDays { get; set; }

    /// <summary>Largest accepted uplink payload in bytes. Default 65536.</summary>
    public int MaxPayloadSize { get; set; } = 65536;

    /// <summary>How long a client-side RPC waits for its handler. Default 60 s.</summary>
    public int ClientRpcTimeoutMs { get; set; } = 60000;

    /// <summary>Concurrent pending server-side RPCs per device before <see cref="RpcStatus.TooManyRequests"/>. Default 10.</summary>
    public int MaxPendingRpcPerDevice { get; set; } = 10;

    /// <summary>Maximum in-flight messages advertised to devices by <c>getSessionLimits</c>. Default 100.</summary>
    public int MaxInflightMessages { get; set; } = 100;

    /// <summary>Per-device rate limit advertised by <c>getSessionLimits</c>, reference format "20:1,600:60"; empty = none.</summary>
    public string DeviceRateLimits { get; set; } = string.Empty;

    /// <summary>Per-gateway rate limit advertised to gateways by <c>getSessionLimits</c> (as <c>gatewayRateLimits</c>); empty = none.</summary>
    public string GatewayRateLimits { get; set; } = string.Empty;

    /// <summary>
    /// Log bytes appended since the last checkpoint after which the state is checkpointed into the
    /// FasterKV store (every record upserted, vanished keys deleted, FASTER fold-over checkpoint) and the
    /// log truncated, bounding replay at open. Default 64 MiB.
    /// </summary>
    public long CheckpointLogBytes { get; set; } = 64L << 20;

    /// <summary>
    /// What a start does when the uplink log cannot be read to its end (a damaged record: a disk fault, a file edited or
    /// cut by hand). <see cref="LogDamagePolicy.Stop"/> (default): the start fails, naming the file and the address.
    /// <see cref="LogDamagePolicy.KeepBefore"/>: the state up to the damaged record is kept and checkpointed at once,
    /// and the log from it on is dropped (acknowledged data among it is lost; the start logs how many bytes).
    /// </summary>
    public LogDamagePolicy OnLogDamage { get; set; } = LogDamagePolicy.Stop;

    /// <summary>How long a device claim stays valid when the device does not say. Default 1 day (reference default).</summary>
    public long DefaultClaimDurationMs { get; set; } = 86_400_000;

    /// <summary>Delivery attempts after the first before a persistent RPC is FAILED, when the request does not say (reference ACTORS_RPC_MAX_RETRIES). Default 5.</summary>
    public int RpcMaxRetries { get; set; } = 5;

    /// <summary>
    /// Sequential delivery for constrained devices (reference ACTORS_RPC_SEQUENTIAL): a device gets its next
    /// persistent RPC only after the previous one reached a final state. Default false.
    /// </summary>
    public bool RpcSequentialDelivery { get; set; }

    /// <summary>How often persistent RPCs past their expiration time are moved to EXPIRED or TIMEOUT, in ms. Default 250.</summary>
    public int RpcExpiryCheckIntervalMs { get; set; } = 250;

    /// <summary>How long a persistent RPC is kept after it reached a final state, in ms; 0 keeps it forever. Default 7 days.</summary>
    public long PersistentRpcTtlMs { get; set; } = 7L * 86_400_000;

    /// <summary>Interval of the TTL clean-up of final persistent RPCs, in ms (reference SQL_RPC_TTL_CHECKING_INTERVAL). Default 2 hours.</summary>
    public long RpcTtlCheckIntervalMs { get; set; } = 7_200_000;
}

/// <summary>What a start does with an uplink log damaged before its end (<see cref="CoreOptions.OnLogDamage"/>).</summary>
public enum LogDamagePolicy
{
    /// <summary>The start fails, naming the file and the address; nothing is changed.</summary>
    Stop,

    /// <summary>The state up to the damaged record is kept and checkpointed; the log from it on is dropped.</summary>
    KeepBefore,
}
