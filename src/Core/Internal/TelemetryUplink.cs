using System.Threading.Tasks.Sources;
using Perf.Core.Telemetry;

namespace Perf.Core.Internal;

/// <summary>
/// One telemetry uplink from parse to acknowledgement, pooled: the door's <see cref="ValueTask{T}"/> is
/// backed by this object (<see cref="IValueTaskSource{T}"/>), the parsed entries live in its reused
/// list, and the commit loop applies it through a typed step (no closure). Reading the result returns
/// the object to its pool, so a steady stream of QoS 1 uplinks allocates nothing per message here
/// (before: a List, a closure, a PendingRecord, a TaskCompletionSource, its Task and an async box; the
/// server-wide figure over a 10 s MQTT QoS 1 run went from 909 to 116-122 B per message, docs/PERFORMANCE.md).
/// </summary>
internal sealed class TelemetryUplink : PendingRecord, IValueTaskSource<UplinkResult>
{
    /// <summary>Entries beyond this capacity are not kept in the pool (one huge payload must not pin memory).</summary>
    private const int MaxPooledEntries = 256;

    private static readonly UplinkResult NotFound = new(UplinkStatus.NotFound, "device not found");
    private static readonly UplinkResult Unavailable = new(UplinkStatus.Unavailable, "storage unavailable");

    private readonly TelemetryUplinkPool _pool;

    // Continuations run on the thread pool: the commit thread must never run door code. Only an uplink queued by a
    // driving thread (CommitRounds) runs its continuation inline, on that thread, in its own round (Signal).
    private ManualResetValueTaskSourceCore<UplinkResult> _core = new() { RunContinuationsAsynchronously = true };

    public TelemetryUplink(TelemetryUplinkPool pool) => _pool = pool;

    public List<TsKvEntry> Entries { get; private set; } = new(8);

    public Guid DeviceId;
    public TelemetryService? Service;

    /// <summary>Where the payload starts in a <see cref="RecordKind.TelemetryJson"/> record: kind, device, receipt time.</summary>
    public const int JsonOffset = 1 + 16 + 8;

    /// <summary>The receipt time: the ts of the payload's entries without one.</summary>
    public long NowTs;

    /// <summary>The key table the payload's keys are interned into.</summary>
    public KeyTable? Keys;

    /// <summary>Why the payload did not parse (set by <see cref="Prepare"/>); null when it did.</summary>
    private string? _parseError;

    /// <summary>The record buffer this object reuses (kept across uses; 256 B is a shared-pool bucket size, so growth may return it there).</summary>
    private byte[] _record = new byte[256];

    public byte[] RecordBuffer => _record;

    public override void ReleaseBuffer(byte[] buffer) => _record = buffer;

    /// <summary>The door's handle; valid until its result is read once.</summary>
    public ValueTask<UplinkResult> AsValueTask() => new(this, _core.Version);

    public override void Complete()
    {
        Apply();
        _core.SetResult(_applied);
    }

    /// <summary>The outcome of <see cref="Apply"/>, for <see cref="Signal"/>.</summary>
    private UplinkResult _applied;

    /// <summary>
    /// Parses the payload of the record (<see cref="RecordKind.TelemetryJson"/>) into <see cref="Entries"/> while its
    /// commit is on the disk. A payload that does not parse keeps its record (replay skips it the same way) and is
    /// answered <see cref="UplinkStatus.BadPayload"/> by <see cref="Apply"/>.
    /// </summary>
    public override void Prepare()
    {
        var record = Buffer ?? _record;
        _parseError = Parse(record.AsSpan(JsonOffset, Length - JsonOffset), NowTs, Keys!, Entries);
    }

    /// <summary>
    /// A <see cref="RecordKind.TelemetryJson"/> payload's parse, live and on replay alike: null when it parsed, else why
    /// not (and <paramref name="entries"/> is left empty). A fault in the parser is that payload's answer too, never a
    /// failed round (that would be the storage's failure) or a failed start.
    /// </summary>
    internal static string? Parse(ReadOnlySpan<byte> json, long nowTs, KeyTable keys, List<TsKvEntry> entries)
    {
        string? error;
        try
        {
            error = TelemetryJsonParser.TryParseTelemetry(json, nowTs, keys, entries, out var parseError) ? null : parseError.Message;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            error = $"the payload could not be parsed: {e.Message}";
        }
        if (error is not null)
        {
            entries.Clear();
        }
        return error;
    }

    public override void Apply()
    {
        if (_parseError is { } error)
        {
            _applied = new UplinkResult(UplinkStatus.BadPayload, error);
            return;
        }
        if (Entries.Count == 0)
        {
            // {} or [] (or only nulls): nothing to apply, as when it was answered before its commit.
            _applied = UplinkResult.Success;
            return;
        }
        try
        {
            _applied = Service!.ApplyUplink(DeviceId, Entries) ? UplinkResult.Success : NotFound;
        }
        catch (Exception)
        {
            _applied = Unavailable;
        }
    }

    /// <summary>Completes an inline uplink on the driving thread: the door's continuation (its PUBACK pump) runs here.</summary>
    public override void Signal()
    {
        _core.RunContinuationsAsynchronously = false;
        _core.SetResult(_applied);
    }

    public override void Fail(Exception error) => _core.SetResult(Unavailable);

    /// <summary>Completes without having been queued (device unknown, nothing to store).</summary>
    public ValueTask<UplinkResult> CompleteNow(UplinkResult result)
    {
        _core.SetResult(result);
        return AsValueTask();
    }

    public UplinkResult GetResult(short token)
    {
        // Counted here, where every pooled uplink's outcome is read exactly once (static tags: no allocation).
        var result = CoreMetrics.Telemetry(_core.GetResult(token));
        Reset();
        _pool.Return(this);
        return result;
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    /// <summary>Back to the pool's state: a new version, no entries. Called once per use, by the reader of the result.</summary>
    public void Reset()
    {
        _core.Reset();
        _core.RunContinuationsAsynchronously = true;
        _applied = default;
        Inline = false;
        DeviceId = default;
        Service = null;
        Keys = null;
        NowTs = 0;
        _parseError = null;
        Buffer = null;
        Length = 0;
        if (Entries.Capacity > MaxPooledEntries)
        {
            Entries = new List<TsKvEntry>(8);
        }
        else
        {
            Entries.Clear();
        }
    }
}

/// <summary>
/// A bounded stack of idle <see cref="TelemetryUplink"/>s. In steady state rents and returns balance,
/// so the stack oscillates by about one commit batch; beyond <see cref="Capacity"/> idle objects are
/// left to the GC (a burst of 320,000 in flight must not stay pinned in the pool afterwards).
/// </summary>
internal sealed class TelemetryUplinkPool
{
    public const int Capacity = 16_384;

    private readonly Lock _lock = new();
    private readonly TelemetryUplink?[] _items = new TelemetryUplink?[Capacity];
    private int _count;

    public TelemetryUplink Rent()
    {
        lock (_lock)
        {
            if (_count > 0)
            {
                var item = _items[--_count]!;
                _items[_count] = null;
                return item;
            }
        }
        return new TelemetryUplink(this);
    }

    public void Return(TelemetryUplink item)
    {
        lock (_lock)
        {
            if (_count < _items.Length)
            {
                _items[_count++] = item;
            }
        }
    }
}
