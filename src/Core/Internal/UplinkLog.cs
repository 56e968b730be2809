using System.Buffers;
using System.Diagnostics;
using System.Threading.Channels;
using FASTER.core;
using Microsoft.Extensions.Logging;

namespace Perf.Core.Internal;

/// <summary>A record waiting for the group commit, with what to do once it is durable.</summary>
internal abstract class PendingRecord
{
    /// <summary>Pooled record bytes; null for a barrier (runs in log order, writes nothing).</summary>
    public byte[]? Buffer;
    public int Length;

    /// <summary>The record's kind (its first byte), set when it is queued; 0 for a barrier.</summary>
    public byte Kind;

    /// <summary>Applies the record to in-memory state and completes the waiter. Runs on the commit loop.</summary>
    public abstract void Complete();

    public abstract void Fail(Exception error);

    /// <summary>Called on the loop once <see cref="Buffer"/> is in the log; pooled records keep it for their next use.</summary>
    public virtual void ReleaseBuffer(byte[] buffer) => ArrayPool<byte>.Shared.Return(buffer);
}

internal sealed class PendingRecord<T>(Func<T> apply) : PendingRecord
{
    public readonly TaskCompletionSource<T> Completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Complete()
    {
        T result;
        try
        {
            result = apply();
        }
        catch (Exception e)
        {
            Completion.TrySetException(e);
            return;
        }
        Completion.TrySetResult(result);
    }

    public override void Fail(Exception error) => Completion.TrySetException(error);
}

/// <summary>
/// The durable uplink log: a FASTER <see cref="FasterLog"/> fed by a group-commit loop in two halves.
/// Writers hand a finished record to a channel; the issuing half drains everything queued, enqueues it
/// in channel order and issues one commit for it (up to <see cref="MaxCommitsInFlight"/> overlap); the
/// applying half waits for each batch's commit in issue order, and only then applies each record to
/// memory (in log order, on one thread, so live state is exactly what a replay of the same records
/// produces) and completes the writers' tasks. Single-threaded apply is what makes uniqueness checks
/// (device names, tokens) deterministic on replay.
/// </summary>
internal sealed class UplinkLog
{
    private FasterLog _log;
    private readonly FasterLogSettings _settings;
    private readonly string _directory;
    private readonly IDevice _device;
    private readonly ILogCommitManager? _commitManager;
    private readonly Channel<PendingRecord> _queue =
        Channel.CreateUnbounded<PendingRecord>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _crash = new();
    private readonly TimeSpan _interval;
    private readonly ILogger _logger;
    private readonly Channel<CommitBatch> _committing = Channel.CreateBounded<CommitBatch>(
        new BoundedChannelOptions(MaxCommitsInFlight) { SingleReader = true, SingleWriter = true });
    private readonly Stack<CommitBatch> _idleBatches = new();
    private Func<long, ValueTask>? _afterBatch;
    private Task? _loop;
    private ulong _appliedKinds;

    // After a failed commit FASTER refuses every later one until the log is opened again (see RecoverAsync).
    private readonly Lock _logGate = new();
    private bool _logOpen = true;
    private long _truncateTo;
    private volatile Exception? _failure;
    private long _lastReopenAttempt;
    private int _inFlight;
    private TaskCompletionSource? _drained;

    /// <summary>Group commits issued and not yet applied at most (beyond it the issuing loop waits).</summary>
    internal const int MaxCommitsInFlight = 4;

    private UplinkLog(FasterLog log, FasterLogSettings settings, string directory, IDevice device, ILogCommitManager? commitManager, int commitIntervalMs, ILogger logger)
    {
        _log = log;
        _settings = settings;
        _directory = directory;
        _device = device;
        _commitManager = commitManager;
        _interval = TimeSpan.FromMilliseconds(Math.Max(0, commitIntervalMs));
        _logger = logger;
    }

    public static async Task<UplinkLog> OpenAsync(string directory, CoreOptions options, ILogger logger, CancellationToken ct)
    {
        var (settings, device, commitManager) = NewLogSettings(directory, options);
        var log = await FasterLog.CreateAsync(settings, ct);
        return new UplinkLog(log, settings, directory, device, commitManager, options.CommitIntervalMs, logger)
        {
            ReopenInterval = options.LogReopenInterval,
        };
    }

    /// <summary>
    /// The log's device, FASTER settings and commit manager for <paramref name="directory"/> (created if missing):
    /// what <see cref="OpenAsync"/> opens, and what load/'s <c>durable-loop --log faster</c> opens to measure the
    /// same commit. The caller disposes the log, then the device and the commit manager.
    /// </summary>
    internal static (FasterLogSettings Settings, IDevice Device, SparseCommitMetadata? CommitManager) NewLogSettings(string directory, CoreOptions options)
    {
        Directory.CreateDirectory(directory);
        var fastCommit = UseFastCommit(directory, options.FastCommitForNewLog);
        var commitManager = fastCommit ? new SparseCommitMetadata(NewCommitManager(directory), FastCommitMetadataEvery) : null;
        // Truncated 1 GiB segments are shrunk step by step before they are deleted (see GentleDevice).
        // Without FsyncOnCommit its writes go through the page cache (see GentleDevice.BufferedWrites).
        IDevice device = new GentleDevice(Devices.CreateLogDevice(
            Path.Combine(directory, "uplink.log"),
            preallocateFile: false,
            deleteOnClose: false,
            recoverDevice: true,
            disableFileBuffering: options.FsyncOnCommit))
        {
            BufferedWrites = !options.FsyncOnCommit,
        };
        device = options.WrapLogDevice?.Invoke(device) ?? device;
        var settings = new FasterLogSettings
        {
            LogDevice = device,
            LogCommitDir = directory,
            PageSizeBits = 21,
            MemorySizeBits = 24,
            SegmentSizeBits = 30,
            TryRecoverLatest = true,
            AutoRefreshSafeTailAddress = false,
            // Fast commits write the commit record into the log itself, in the same flush as the records it
            // covers, instead of creating a commit metadata file per commit; that needs per-entry checksums,
            // which recovery uses to find the last complete commit record.
            FastCommitMode = fastCommit,
            LogChecksum = fastCommit ? LogChecksumType.PerEntry : LogChecksumType.None,
            // What FASTER would create for LogCommitDir, with sparse metadata writes in fast-commit mode. FASTER
            // disposes only a commit manager it created itself, so this one is disposed in CloseAsync.
            LogCommitManager = commitManager,
        };
        return (settings, device, commitManager);
    }

    /// <summary>In fast-commit mode the commit metadata file is written once per this many commits (and at every truncation).</summary>
    internal const int FastCommitMetadataEvery = 1000;

    private static DeviceLogCommitCheckpointManager NewCommitManager(string directory) =>
        new(new LocalStorageNamedDeviceFactory(), new DefaultCheckpointNamingScheme(directory), removeOutdated: true);

    /// <summary>Present in a log directory written with fast commits (and per-entry checksums).</summary>
    internal const string FastCommitMarker = "fast-commit";

    /// <summary>
    /// Fast commits for a new log; a log written before them (no per-entry checksums, so no marker) keeps
    /// its format. The marker is durable before the first record is written.
    /// </summary>
    private static bool UseFastCommit(string directory, bool forNewLog)
    {
        var marker = Path.Combine(directory, FastCommitMarker);
        if (File.Exists(marker))
        {
            return true;
        }
        if (!forNewLog || Directory.EnumerateFiles(directory, "uplink.log*").Any())
        {
            return false;
        }
        using (var stream = new FileStream(marker, FileMode.CreateNew, FileAccess.Write))
        {
            stream.Write("FasterLog FastCommitMode, LogChecksum PerEntry\n"u8);
            stream.Flush(flushToDisk: true);
        }
        return true;
    }

    public long BeginAddress => _log.BeginAddress;

    /// <summary>
    /// The failed write the log is recovering from, or null while it works: from a failed commit until the log is
    /// opened again (<see cref="RecoverAsync"/>), every uplink is refused.
    /// </summary>
    public Exception? Failure => _failure;

    /// <summary>Least time between two attempts to open the log again after a failed write.</summary>
    internal TimeSpan ReopenInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Tail of the log: committed once the loop has stopped (while it runs, it may include commits in flight). After
    /// a failed write not yet recovered from, the last successful commit: memory holds nothing beyond it.
    /// </summary>
    public long TailAddress => _failure is null ? _log.TailAddress : _log.CommittedUntilAddress;

    /// <summary>Reads every committed record from <paramref name="from"/> to the committed tail.</summary>
    public long Replay(long from, RecordSink sink)
    {
        var start = Math.Max(from, _log.BeginAddress);
        var end = _log.CommittedUntilAddress;
        long count = 0;
        if (start >= end)
        {
            return 0;
        }
        using var iterator = _log.Scan(start, end, name: null, recover: false);
        while (iterator.GetNext(MemoryPool<byte>.Shared, out var owner, out var length, out _))
        {
            using (owner)
            {
                sink(owner.Memory.Span[..length]);
            }
            count++;
        }
        return count;
    }

    /// <summary>
    /// The kinds of the records applied since the last call (bit <c>1 &lt;&lt; kind</c>; kinds from 63 up share bit
    /// 63), and clears them. A barrier adds nothing: it writes no record, so what its action changes would not
    /// survive a restart, and no action may change durable state. On the applying loop only (in the after-batch
    /// callback), or once the loop has stopped.
    /// </summary>
    public ulong TakeAppliedKinds()
    {
        var kinds = _appliedKinds;
        _appliedKinds = 0;
        return kinds;
    }

    /// <summary>The bit of <paramref name="kind"/> in <see cref="TakeAppliedKinds"/>.</summary>
    public static ulong KindBit(byte kind) => kind == 0 ? 0 : 1UL << Math.Min((int)kind, 63);

    /// <summary>Starts the commit loop; <paramref name="afterBatch"/> runs on the loop after each applied batch with the committed tail.</summary>
    public void Start(Func<long, ValueTask> afterBatch)
    {
        _afterBatch = afterBatch;
        _loop = Task.WhenAll(Task.Run(RunAsync), Task.Run(ApplyAsync));
    }

    /// <summary>Queues a record; the task completes with <paramref name="apply"/>'s result after the commit that holds it.</summary>
    public Task<T> Append<T>(ref RecordWriter record, Func<T> apply)
    {
        var pending = new PendingRecord<T>(apply);
        pending.Buffer = record.Detach(out pending.Length);
        pending.Kind = pending.Buffer[0];
        if (!_queue.Writer.TryWrite(pending))
        {
            ArrayPool<byte>.Shared.Return(pending.Buffer);
            return Task.FromException<T>(new ObjectDisposedException(nameof(UplinkLog)));
        }
        return pending.Completion.Task;
    }

    /// <summary>
    /// Queues a record that completes itself (<see cref="PendingRecord.Complete"/> applies it after the
    /// commit that holds it): the typed, closure-free path of the per-message uplinks.
    /// </summary>
    public void Append(ref RecordWriter record, PendingRecord pending)
    {
        pending.Buffer = record.Detach(out pending.Length);
        pending.Kind = pending.Buffer[0];
        if (!_queue.Writer.TryWrite(pending))
        {
            var buffer = pending.Buffer;
            pending.Buffer = null;
            pending.ReleaseBuffer(buffer);
            pending.Fail(new ObjectDisposedException(nameof(UplinkLog)));
        }
    }

    /// <summary>
    /// <paramref name="applied"/>'s result once the records its apply appended (derived records, e.g. an edge's
    /// downlink written by a subscriber on the commit loop) are durable too: a barrier queued after the apply
    /// completes with the commit that holds them. One commit interval more than <paramref name="applied"/>.
    /// </summary>
    public async Task<T> ThenDerivedDurable<T>(Task<T> applied)
    {
        var result = await applied;
        await Barrier(static () => true);
        return result;
    }

    /// <summary>
    /// Runs <paramref name="action"/> on the loop after everything queued before it was committed and applied. The
    /// action must not change durable state: nothing of it is in the log (see <see cref="TakeAppliedKinds"/>).
    /// </summary>
    public Task<T> Barrier<T>(Func<T> action)
    {
        var pending = new PendingRecord<T>(action);
        if (!_queue.Writer.TryWrite(pending))
        {
            return Task.FromException<T>(new ObjectDisposedException(nameof(UplinkLog)));
        }
        return pending.Completion.Task;
    }

    /// <summary>
    /// The issuing half of the loop: drains the queue into a batch, enqueues its records, issues the batch's
    /// commit without waiting for it and hands the batch to <see cref="ApplyAsync"/>. Up to
    /// <see cref="MaxCommitsInFlight"/> commits overlap, so a record that arrives while one commit is on
    /// disk waits for the next commit interval, not for that commit to finish first.
    /// </summary>
    private async Task RunAsync()
    {
        var reader = _queue.Reader;
        var writer = _committing.Writer;
        var lastCommit = Stopwatch.GetTimestamp() - (long)(_interval.TotalSeconds * Stopwatch.Frequency);
        var crash = _crash.Token;
        CommitBatch? batch = null;
        try
        {
            while (await reader.WaitToReadAsync(crash))
            {
                // Group commit: at most one commit issued per interval; whatever arrives meanwhile joins it.
                var wait = _interval - Stopwatch.GetElapsedTime(lastCommit);
                if (wait > TimeSpan.Zero)
                {
                    await Task.Delay(wait, crash);
                }

                batch = RentBatch();
                while (reader.TryRead(out var pending))
                {
                    batch.Records.Add(pending);
                }

                if (_failure is { } failure && !await RecoverAsync(crash))
                {
                    Refuse(batch, failure);
                    batch = null;
                    lastCommit = Stopwatch.GetTimestamp();
                    continue;
                }

                var any = false;
                foreach (var pending in batch.Records)
                {
                    if (pending.Buffer is { } buffer)
                    {
                        _log.Enqueue(buffer.AsSpan(0, pending.Length));
                        pending.Buffer = null;
                        pending.ReleaseBuffer(buffer);
                        any = true;
                    }
                }

                lastCommit = Stopwatch.GetTimestamp();
                batch.Tail = _log.TailAddress;
                batch.Issued = lastCommit;
                batch.Commit = any ? _log.CommitAsync(crash).AsTask() : Task.CompletedTask;
                Interlocked.Increment(ref _inFlight);
                await writer.WriteAsync(batch, crash);
                batch = null;
            }
        }
        catch (OperationCanceledException) when (crash.IsCancellationRequested)
        {
            batch?.FailAll(new OperationCanceledException("Engine abandoned."));
        }
        finally
        {
            writer.TryComplete();
        }
    }

    /// <summary>
    /// The applying half: takes batches in the order their commits were issued (log order), waits for each
    /// batch's commit, then applies its records on this single thread and completes their writers, so
    /// memory is exactly what a replay of the log produces and nothing is acknowledged before it is durable.
    /// </summary>
    private async Task ApplyAsync()
    {
        var reader = _committing.Reader;
        var crash = _crash.Token;
        CommitBatch? batch = null;
        try
        {
            while (await reader.WaitToReadAsync(crash))
            {
                while (reader.TryRead(out batch))
                {
                    try
                    {
                        await batch.Commit!;
                        CoreMetrics.Committed(Stopwatch.GetElapsedTime(batch.Issued), batch.Records.Count);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        CoreLog.CommitFailed(_logger, e);
                        _failure ??= e;
                        batch.FailAll(e);
                        ReturnBatch(batch);
                        batch = null;
                        Applied();
                        continue;
                    }

                    crash.ThrowIfCancellationRequested();
                    var kinds = _appliedKinds;
                    foreach (var pending in batch.Records)
                    {
                        kinds |= KindBit(pending.Kind);
                        pending.Complete();
                    }
                    _appliedKinds = kinds;
                    var tail = batch.Tail;
                    ReturnBatch(batch);
                    batch = null;

                    if (_afterBatch is { } after)
                    {
                        try
                        {
                            await after(tail);
                        }
                        catch (Exception e)
                        {
                            CoreLog.MaintenanceFailed(_logger, e);
                        }
                    }
                    Applied();
                }
            }
        }
        catch (OperationCanceledException) when (crash.IsCancellationRequested)
        {
            var dropped = new OperationCanceledException("Engine abandoned.");
            batch?.FailAll(dropped);
            while (reader.TryRead(out var left))
            {
                left.FailAll(dropped);
            }
        }
    }

    /// <summary>A batch taken off the applying loop (applied or failed): wakes a recovery waiting for none in flight.</summary>
    private void Applied()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0)
        {
            Interlocked.Exchange(ref _drained, null)?.TrySetResult();
        }
    }

    /// <summary>Fails a batch that was never written (its records' buffers go back to their owners).</summary>
    private void Refuse(CommitBatch batch, Exception failure)
    {
        var refused = new IOException($"The uplink log in {_directory} is unavailable after a failed write ({failure.Message}); it is reopened at most every {ReopenInterval.TotalMilliseconds:0} ms.", failure);
        foreach (var pending in batch.Records)
        {
            if (pending.Buffer is { } buffer)
            {
                pending.Buffer = null;
                pending.ReleaseBuffer(buffer);
            }
        }
        batch.FailAll(refused);
        ReturnBatch(batch);
    }

    /// <summary>
    /// Opens the log again after a failed commit. FASTER keeps a failed flush as a permanent error (every later
    /// commit fails with it, even once the disk has room again), so the issuing loop waits until no commit is in
    /// flight (all of them failed or applied), disposes the log without committing and opens it from its files: it
    /// resumes at its last successful commit, and the failed records after it, none of them acknowledged or applied,
    /// are written over. At most once per <see cref="ReopenInterval"/>; false while it cannot be opened.
    /// A later commit that FASTER failed only because an earlier one had, while its own write landed, can be found
    /// again by the reopen (and by a restart, without this). Its records were refused to their writers and never applied:
    /// a restart before the next checkpoint replays them, as if retried (at-least-once delivery allows it), and that
    /// checkpoint drops them otherwise. Nothing acknowledged is lost either way.
    /// </summary>
    private async Task<bool> RecoverAsync(CancellationToken crash)
    {
        if (Stopwatch.GetElapsedTime(_lastReopenAttempt) < ReopenInterval)
        {
            return false;
        }
        while (Volatile.Read(ref _inFlight) > 0)
        {
            var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _drained, drained);
            if (Volatile.Read(ref _inFlight) == 0)
            {
                break;
            }
            await drained.Task.WaitAsync(crash);
        }
        _lastReopenAttempt = Stopwatch.GetTimestamp();
        var failure = _failure!;
        try
        {
            FasterLog? old;
            lock (_logGate)
            {
                old = _logOpen ? _log : null;
                _logOpen = false;
            }
            old?.Dispose();
            var log = await FasterLog.CreateAsync(_settings, crash);
            lock (_logGate)
            {
                _log = log;
                _logOpen = true;
                if (_truncateTo > log.BeginAddress)
                {
                    log.TruncateUntil(_truncateTo);
                }
            }
            _failure = null;
            CoreLog.UplinkLogReopened(_logger, _directory, failure.Message, log.CommittedUntilAddress);
            return true;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            CoreLog.UplinkLogReopenFailed(_logger, _directory, (long)ReopenInterval.TotalMilliseconds, e);
            return false;
        }
    }

    private CommitBatch RentBatch()
    {
        lock (_idleBatches)
        {
            if (_idleBatches.Count > 0)
            {
                return _idleBatches.Pop();
            }
        }
        return new CommitBatch();
    }

    private void ReturnBatch(CommitBatch batch)
    {
        batch.Records.Clear();
        batch.Commit = null;
        lock (_idleBatches)
        {
            _idleBatches.Push(batch);
        }
    }

    /// <summary>One group commit: its records in log order, the log tail after them and the commit covering them.</summary>
    private sealed class CommitBatch
    {
        public readonly List<PendingRecord> Records = new(256);
        public Task? Commit;
        public long Tail;
        public long Issued;

        public void FailAll(Exception error)
        {
            foreach (var pending in Records)
            {
                pending.Fail(error);
            }
            Records.Clear();
        }
    }

    /// <summary>Marks everything before <paramref name="address"/> as reclaimable (persisted by the next commit).</summary>
    public void TruncateUntil(long address)
    {
        lock (_logGate)
        {
            // Kept for a log opened again after a failed write (the addresses go on).
            _truncateTo = Math.Max(_truncateTo, address);
            if (_logOpen)
            {
                _log.TruncateUntil(address);
            }
        }
    }

    /// <summary>Graceful stop: no new records, drain and commit the queue.</summary>
    public async Task StopAsync()
    {
        _queue.Writer.TryComplete();
        if (_loop is not null)
        {
            await _loop;
        }
    }

    /// <summary>Final commit (persists a truncation) and release of the files.</summary>
    public async Task CloseAsync()
    {
        try
        {
            // A log that failed a write refuses every commit until it is opened again: nothing to persist here.
            if (_logOpen && _failure is null
                && (_log.TailAddress > _log.CommittedUntilAddress || _log.BeginAddress > _log.CommittedBeginAddress))
            {
                await _log.CommitAsync();
            }
        }
        finally
        {
            if (_logOpen)
            {
                _log.Dispose();
            }
            _device.Dispose();
            _commitManager?.Dispose();
        }
    }

    /// <summary>
    /// Test seam simulating kill -9: the loop stops at once, nothing more is committed or flushed, and
    /// the FASTER instance is deliberately not disposed (disposing could flush).
    /// </summary>
    public async Task AbandonAsync()
    {
        _queue.Writer.TryComplete();
        await _crash.CancelAsync();
        if (_loop is not null)
        {
            try
            {
                await _loop;
            }
            catch (OperationCanceledException)
            {
            }
        }
    }
}

/// <summary>Receives one replayed record.</summary>
internal delegate void RecordSink(ReadOnlySpan<byte> record);
