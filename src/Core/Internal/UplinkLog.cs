using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using FASTER.core;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace Perf.Core.Internal;

/// <summary>A record waiting for the group commit, with what to do once it is durable.</summary>
internal abstract class PendingRecord
{
    /// <summary>Pooled record bytes; null for a barrier (runs in log order, writes nothing).</summary>
    public byte[]? Buffer;
    public int Length;

    /// <summary>The record's kind (its first byte), set when it is queued; 0 for a barrier.</summary>
    public byte Kind;

    /// <summary>
    /// Queued by a driving thread (<see cref="CommitRounds"/>): its round applies it with <see cref="Apply"/> and,
    /// once the whole batch is applied, completes its waiter with <see cref="Signal"/>, there.
    /// </summary>
    public bool Inline;

    /// <summary>Applies the record to in-memory state and completes the waiter. Runs in a round.</summary>
    public abstract void Complete();

    /// <summary>
    /// Work of the record's own that can run while its commit is on the disk, before <see cref="Apply"/> or
    /// <see cref="Complete"/>: it runs in the round, on the round's thread, after the record is enqueued and the commit
    /// issued. It must not change shared state (the record is not durable yet) and must not throw.
    /// </summary>
    public virtual void Prepare()
    {
    }

    /// <summary>An inline record's apply; <see cref="Signal"/> completes its waiter. By default both are <see cref="Complete"/>.</summary>
    public virtual void Apply() => Complete();

    /// <summary>Completes an inline record's waiter after <see cref="Apply"/>, running its continuation on this thread.</summary>
    public virtual void Signal()
    {
    }

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
/// The durable uplink log: a FASTER <see cref="FasterLog"/> fed by group-commit rounds. Writers queue a finished
/// record; a round takes everything queued, enqueues it in queue order, commits it and waits for the commit, and
/// only then applies each record to memory (in log order, one round at a time, so live state is exactly what a
/// replay of the same records produces) and completes the writers' tasks. Single-threaded apply is what makes
/// uniqueness checks (device names, tokens) deterministic on replay.
/// </summary>
/// <remarks>
/// Rounds run on the log's commit thread, woken by a record queued anywhere, or on a thread that drives rounds
/// itself (<see cref="CommitRounds"/>): the MQTT door's epoll thread reads every ready connection, queues their
/// uplinks and then commits, applies and acknowledges them before it waits for the next bytes, with no hand-off
/// between threads (issue 12, row 5: docs/PERFORMANCE.md). Records queued meanwhile wait for the next round, so
/// the rounds' batches grow with the load.
/// </remarks>
internal sealed class UplinkLog
{
    /// <summary>
    /// The largest record the log takes: one page (PageSizeBits 21) less FASTER's entry header and checksum. A larger
    /// one is refused when appended; enqueued, it would throw inside the round and fail every record of that round.
    /// </summary>
    public const int MaxRecordBytes = (1 << 21) - 64;

    private FasterLog _log;
    private readonly FasterLogSettings _settings;
    private readonly string _directory;
    private readonly IDevice _device;
    private readonly ILogCommitManager? _commitManager;
    /// <summary>Guards <see cref="_queued"/>, <see cref="_closed"/> and <see cref="_wakeRequested"/>.</summary>
    private readonly Lock _queueGate = new();
    /// <summary>Records queued for the next round (swapped with <see cref="_batch"/> when a round takes them).</summary>
    private List<PendingRecord> _queued = new(256);
    /// <summary>The round's records; empty between rounds. Only under <see cref="_round"/>.</summary>
    private List<PendingRecord> _batch = new(256);
    private bool _closed;
    /// <summary>The commit thread was woken and has not taken the queue since.</summary>
    private bool _wakeRequested;
    private readonly SemaphoreSlim _wake = new(0);
    /// <summary>Held for a whole round: rounds run one at a time, on the commit thread or on a driving thread.</summary>
    private readonly Lock _round = new();
    /// <summary>Set when the round's commit completes (<see cref="WaitForCommit"/>); no spinning before it blocks.</summary>
    private readonly ManualResetEventSlim _commitDone = new(false, spinCount: 0);
    private readonly Action _signalCommitDone;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _lastCommit;
    private readonly CancellationTokenSource _crash = new();
    private readonly TimeSpan _interval;
    private readonly ILogger _logger;
    private Func<long, ValueTask>? _afterBatch;
    private ulong _appliedKinds;

    // After a failed commit FASTER refuses every later one until the log is opened again (see Recover).
    private readonly Lock _logGate = new();
    private bool _logOpen = true;
    private long _truncateTo;
    private volatile Exception? _failure;
    private long _lastReopenAttempt;

    private UplinkLog(FasterLog log, FasterLogSettings settings, string directory, IDevice device, ILogCommitManager? commitManager, int commitIntervalMs, ILogger logger)
    {
        _log = log;
        _settings = settings;
        _directory = directory;
        _device = device;
        _commitManager = commitManager;
        _interval = TimeSpan.FromMilliseconds(Math.Max(0, commitIntervalMs));
        _logger = logger;
        _signalCommitDone = _commitDone.Set;
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
            DedicatedWriter = true,
        };
        device = options.WrapLogDevice?.Invoke(device) ?? device;
        var settings = new FasterLogSettings
        {
            LogDevice = device,
            LogCommitDir = directory,
            PageSizeBits = 21,
            MemorySizeBits = MemorySizeBits,
            SegmentSizeBits = SegmentSizeBits,
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

    /// <summary>The log keeps its last 16 MiB in memory (at open, the pages from there to the tail are loaded).</summary>
    private const int MemorySizeBits = 24;

    /// <summary>The log's segment files are 1 GiB (<c>uplink.log.N</c> holds addresses from N GiB on).</summary>
    private const int SegmentSizeBits = 30;

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
    /// opened again (<see cref="Recover"/>), every uplink is refused.
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
    public long Replay(long from, RecordSink sink) => Replay(from, sink, keepBeforeDamage: false, out _);

    /// <summary>
    /// Replays the committed records from <paramref name="from"/> into <paramref name="sink"/>; returns how many. A record
    /// that cannot be read (a damaged file) fails the replay with an <see cref="InvalidDataException"/> naming the file,
    /// the address and the way out, or with <paramref name="keepBeforeDamage"/> ends it there:
    /// <paramref name="damagedAt"/> is then its address (-1 when the log was read to its end).
    /// </summary>
    public long Replay(long from, RecordSink sink, bool keepBeforeDamage, out long damagedAt)
    {
        damagedAt = -1;
        var start = Math.Max(from, _log.BeginAddress);
        var end = _log.CommittedUntilAddress;
        long count = 0;
        if (start >= end)
        {
            return 0;
        }
        using var iterator = _log.Scan(start, end, name: null, recover: false);
        using var checksums = _settings.LogChecksum == LogChecksumType.PerEntry ? new EntryChecksums(_directory, _log.TailAddress - (1L << MemorySizeBits)) : null;
        while (true)
        {
            var at = iterator.NextAddress;
            IMemoryOwner<byte> owner;
            int length;
            string? damage = null;
            try
            {
                if (!iterator.GetNext(MemoryPool<byte>.Shared, out owner, out length, out at))
                {
                    break;
                }
                if (checksums is not null && !checksums.Verify(at, owner.Memory.Span[..length]))
                {
                    owner.Dispose();
                    damage = "the record's checksum does not match its bytes";
                }
            }
            catch (FasterException e)
            {
                damage = e.Message.TrimEnd('.');
                owner = null!;
                length = 0;
            }
            if (damage is not null)
            {
                if (!keepBeforeDamage)
                {
                    throw Damaged(at, end, count, damage);
                }
                damagedAt = at;
                return count;
            }
            using (owner)
            {
                sink(owner.Memory.Span[..length]);
            }
            count++;
        }
        return count;
    }

    /// <summary>
    /// Checks the per-entry checksums FASTER does not: it verifies a record's checksum when it reads the record from the
    /// files, but the pages it loads into memory at open (from its recovered head address on, at most the last 16 MiB)
    /// are scanned without a check, so a damaged record there was replayed as if it were whole. Records in the last
    /// 16 MiB are checked here (FASTER does not expose its head address; the ones before it were checked by FASTER). A record's header is its 8-byte
    /// checksum, then its 4-byte length: the checksum is the XOR (FASTER's <see cref="Utility.XorBytes"/>) of the length
    /// and the payload. The checksum is read from the segment file; the length and payload are what the scan returned
    /// (the same bytes, loaded from that file).
    /// </summary>
    private sealed class EntryChecksums(string directory, long inMemoryFrom) : IDisposable
    {
        private const int HeaderBytes = 12;
        private readonly Dictionary<long, SafeFileHandle> _segments = [];
        private byte[] _scratch = new byte[256];
        private readonly byte[] _window = new byte[1 << 20];
        private long _windowStart = -1;
        private int _windowLength;

        public unsafe bool Verify(long address, ReadOnlySpan<byte> payload)
        {
            if (address < inMemoryFrom)
            {
                return true; // FASTER verified it when it read it from the file
            }
            var segment = address >> SegmentSizeBits;
            if (!_segments.TryGetValue(segment, out var handle))
            {
                handle = File.OpenHandle(Path.Combine(directory, $"uplink.log.{segment}"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                _segments[segment] = handle;
            }
            // The headers are read from the file a window at a time (one read per MiB, not one per record).
            if (address < _windowStart || address + 8 > _windowStart + _windowLength)
            {
                _windowStart = address;
                _windowLength = RandomAccess.Read(handle, _window, address & ((1L << SegmentSizeBits) - 1));
                if (_windowLength < 8)
                {
                    return false;
                }
            }
            var stored = _window.AsSpan((int)(address - _windowStart), 8);
            if (_scratch.Length < payload.Length + 4)
            {
                _scratch = new byte[Math.Max(payload.Length + 4, _scratch.Length * 2)];
            }
            BinaryPrimitives.WriteInt32LittleEndian(_scratch, payload.Length);
            payload.CopyTo(_scratch.AsSpan(4));
            fixed (byte* bytes = _scratch)
            {
                return Utility.XorBytes(bytes, payload.Length + 4) == BinaryPrimitives.ReadUInt64LittleEndian(stored);
            }
        }

        public void Dispose()
        {
            foreach (var handle in _segments.Values)
            {
                handle.Dispose();
            }
        }
    }

    /// <summary>The replay's failure at a damaged record: where it is, what is intact, and the two ways out.</summary>
    private InvalidDataException Damaged(long at, long end, long replayed, string cause)
    {
        var file = Path.Combine(_directory, $"uplink.log.{at >> SegmentSizeBits}");
        var offset = at & ((1L << SegmentSizeBits) - 1);
        return new InvalidDataException(
            $"The uplink log in {_directory} is damaged at address {at} ({file}, byte {offset}: {cause}). " +
            $"The {replayed} records before it were read; {end - at} bytes of committed log from it on cannot be. " +
            "Restore DATA_DIR from a backup, or start once with LOG_DAMAGE=keep-before to keep the state up to that address " +
            "and drop the log from it on (acknowledged data in those bytes is lost).");
    }

    /// <summary>
    /// The kinds of the records applied since the last call (bit <c>1 &lt;&lt; kind</c>; kinds from 63 up share bit
    /// 63), and clears them. A barrier adds nothing: it writes no record, so what its action changes would not
    /// survive a restart, and no action may change durable state. In a round only (in the after-batch
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
        _lastCommit = Stopwatch.GetTimestamp() - (long)(_interval.TotalSeconds * Stopwatch.Frequency);
        var thread = new Thread(RunLoop) { IsBackground = true, Name = "Uplink log commit" };
        thread.Start();
    }

    /// <summary>Queues a record; the task completes with <paramref name="apply"/>'s result after the commit that holds it.</summary>
    public Task<T> Append<T>(ref RecordWriter record, Func<T> apply)
    {
        var pending = new PendingRecord<T>(apply);
        pending.Buffer = record.Detach(out pending.Length);
        pending.Kind = pending.Buffer[0];
        if (pending.Length > MaxRecordBytes)
        {
            ArrayPool<byte>.Shared.Return(pending.Buffer);
            return Task.FromException<T>(TooLarge(pending.Length));
        }
        if (!Queue(pending))
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
        var tooLarge = pending.Length > MaxRecordBytes;
        if (tooLarge || !Queue(pending))
        {
            var buffer = pending.Buffer;
            pending.Buffer = null;
            pending.ReleaseBuffer(buffer);
            pending.Fail(tooLarge ? TooLarge(pending.Length) : new ObjectDisposedException(nameof(UplinkLog)));
        }
    }

    private static InvalidDataException TooLarge(int length) =>
        new($"a record of {length} bytes is larger than the largest the log takes ({MaxRecordBytes} bytes): save the data in smaller parts");

    /// <summary>
    /// <paramref name="applied"/>'s result once the records its apply appended (derived records, e.g. an edge's
    /// downlink written by a subscriber on the commit loop) are durable too: a barrier queued after the apply
    /// completes with the commit that holds them. One commit more than <paramref name="applied"/>.
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
        if (!Queue(pending))
        {
            return Task.FromException<T>(new ObjectDisposedException(nameof(UplinkLog)));
        }
        return pending.Completion.Task;
    }

    /// <summary>
    /// Adds <paramref name="pending"/> to the next round; false once the log takes no more records. On a driving
    /// thread (<see cref="CommitRounds.Drive"/>) the round is left to that thread's next
    /// <see cref="CommitRounds.RunDeferred"/>; elsewhere the commit thread is woken if it was not already.
    /// </summary>
    private bool Queue(PendingRecord pending)
    {
        bool wake;
        lock (_queueGate)
        {
            if (_closed)
            {
                return false;
            }
            _queued.Add(pending);
            if (CommitRounds.Defer(this))
            {
                pending.Inline = true;
                return true;
            }
            wake = RequestWake();
        }
        if (wake)
        {
            _wake.Release();
        }
        return true;
    }

    /// <summary>Wakes the commit thread for what is queued (a driving thread that could not run the round itself).</summary>
    internal void WakeLoop()
    {
        bool wake;
        lock (_queueGate)
        {
            wake = RequestWake();
        }
        if (wake)
        {
            _wake.Release();
        }
    }

    /// <summary>Under <see cref="_queueGate"/>: true when the caller must release the commit thread (no wake pending yet).</summary>
    private bool RequestWake()
    {
        if (_wakeRequested)
        {
            return false;
        }
        _wakeRequested = true;
        return true;
    }

    /// <summary>
    /// Runs a round on the calling (driving) thread unless the commit thread is in one: then that thread is woken for
    /// another round, which takes what the caller queued.
    /// </summary>
    internal void RunRoundHere()
    {
        if (!_round.TryEnter())
        {
            WakeLoop();
            return;
        }
        try
        {
            RunRound(drivenHere: true);
        }
        finally
        {
            _round.Exit();
        }
    }

    /// <summary>
    /// The commit thread: waits until a record is queued by a thread that does not drive rounds itself (a REST call,
    /// a timer, the thread pool), keeps at least the commit interval between its commits, and runs rounds until the
    /// queue is empty. At stop it runs the last rounds and exits; at a simulated crash it exits at once.
    /// </summary>
    private void RunLoop()
    {
        var crash = _crash.Token;
        try
        {
            while (true)
            {
                _wake.Wait(crash);
                var wait = _interval - Stopwatch.GetElapsedTime(Volatile.Read(ref _lastCommit));
                if (wait > TimeSpan.Zero && !Volatile.Read(ref _closed))
                {
                    crash.WaitHandle.WaitOne(wait);
                    crash.ThrowIfCancellationRequested();
                }

                // Records queued during the round woke the loop again (the round cleared the wake): they wait for the
                // next interval, like everything queued after a commit.
                lock (_round)
                {
                    RunRound(drivenHere: false);
                }

                if (Volatile.Read(ref _closed) && QueuedCount() == 0)
                {
                    break;
                }
            }
            _stopped.TrySetResult();
        }
        catch (OperationCanceledException) when (crash.IsCancellationRequested)
        {
            lock (_queueGate)
            {
                ReturnBuffers(_queued);
                FailAll(_queued, new OperationCanceledException("Engine abandoned."));
            }
            _stopped.TrySetResult();
        }
        catch (Exception e)
        {
            // Nothing commits any more: refuse what is queued and what comes, rather than let it wait for ever.
            CoreLog.CommitFailed(_logger, e);
            lock (_queueGate)
            {
                _closed = true;
                ReturnBuffers(_queued);
                FailAll(_queued, e);
            }
            _stopped.TrySetException(e);
        }
    }

    private int QueuedCount()
    {
        lock (_queueGate)
        {
            return _queued.Count;
        }
    }

    /// <summary>
    /// One group commit, under <see cref="_round"/>: takes everything queued, enqueues its records in queue order, commits
    /// them and waits for the commit, then applies each record to memory (in log order, on this one thread at a time, so
    /// live state is exactly what a replay of the same records produces) and completes its writer, then runs the
    /// after-batch step. Nothing is acknowledged before it is durable.
    /// </summary>
    private void RunRound(bool drivenHere)
    {
        List<PendingRecord> batch;
        lock (_queueGate)
        {
            (_queued, _batch) = (_batch, _queued);
            batch = _batch;
            if (!drivenHere)
            {
                _wakeRequested = false;
            }
        }
        if (batch.Count == 0)
        {
            return;
        }

        var crash = _crash.Token;
        try
        {
            crash.ThrowIfCancellationRequested();
            if (_failure is { } failure && !Recover(crash))
            {
                Refuse(batch, failure);
                Volatile.Write(ref _lastCommit, Stopwatch.GetTimestamp());
                return;
            }

            var issued = Stopwatch.GetTimestamp();
            Volatile.Write(ref _lastCommit, issued);
            long tail;
            try
            {
                // An enqueue that throws fails the round like a failed commit: what it enqueued is never committed
                // (the log is opened again at its last commit before the next round), and nothing is applied.
                var any = false;
                foreach (var pending in batch)
                {
                    if (pending.Buffer is { } buffer)
                    {
                        _log.Enqueue(buffer.AsSpan(0, pending.Length));
                        pending.Buffer = null;
                        pending.ReleaseBuffer(buffer);
                        any = true;
                    }
                }

                tail = _log.TailAddress;
                if (any)
                {
                    var commit = _log.CommitAsync(crash);
                    // The round's thread would only wait for the disk here: the records' own work (a telemetry
                    // payload's parse) runs meanwhile, off the path between a read and its acknowledgement.
                    foreach (var pending in batch)
                    {
                        pending.Prepare();
                    }
                    if (!commit.IsCompletedSuccessfully)
                    {
                        WaitForCommit(commit.AsTask());
                    }
                    CoreMetrics.Committed(Stopwatch.GetElapsedTime(issued), batch.Count);
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                CoreLog.CommitFailed(_logger, e);
                _failure ??= e;
                ReturnBuffers(batch);
                // Writers see a storage failure as such (an IOException, as the refusals that follow it), whatever
                // FASTER threw.
                FailAll(batch, e as IOException ?? new IOException($"The uplink log in {_directory} could not write: {e.Message}", e));
                return;
            }

            crash.ThrowIfCancellationRequested();
            var kinds = _appliedKinds;
            int inline = 0;
            foreach (var pending in batch)
            {
                kinds |= KindBit(pending.Kind);
                if (pending.Inline && drivenHere)
                {
                    pending.Apply();
                    inline++;
                }
                else
                {
                    // Queued by a driving thread but taken by the commit thread: its waiter's continuation goes to the pool.
                    pending.Inline = false;
                    pending.Complete();
                }
            }
            _appliedKinds = kinds;
            if (inline > 0)
            {
                SignalInline(batch);
            }
            batch.Clear();

            if (_afterBatch is { } after)
            {
                try
                {
                    var step = after(tail);
                    if (!step.IsCompletedSuccessfully)
                    {
                        step.AsTask().GetAwaiter().GetResult();
                    }
                }
                catch (Exception e)
                {
                    CoreLog.MaintenanceFailed(_logger, e);
                }
            }
        }
        catch (OperationCanceledException) when (crash.IsCancellationRequested)
        {
            FailAll(batch, new OperationCanceledException("Engine abandoned."));
            if (!drivenHere)
            {
                throw;
            }
        }
    }

    /// <summary>
    /// Blocks the round's thread until <paramref name="commit"/> completes, then rethrows its failure. A commit waits
    /// for a disk write (about 1 to 3 ms here), so the wait blocks at once: <see cref="Task.Wait()"/> would first spin
    /// and call <c>sched_yield</c> on the epoll thread, CPU that the two cores' other threads need (issue 12, row 5).
    /// </summary>
    private void WaitForCommit(Task commit)
    {
        if (!commit.IsCompleted)
        {
            _commitDone.Reset();
            commit.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(_signalCommitDone);
            _commitDone.Wait();
        }
        commit.GetAwaiter().GetResult();
    }

    /// <summary>
    /// Completes the inline records' waiters, last first: a connection acknowledges its uplinks in arrival order from a
    /// continuation on the oldest one, which then finds all of the connection's later ones in this round already
    /// complete and answers them with one send, instead of one send per uplink.
    /// </summary>
    private void SignalInline(List<PendingRecord> batch)
    {
        for (int i = batch.Count - 1; i >= 0; i--)
        {
            var pending = batch[i];
            if (!pending.Inline)
            {
                continue;
            }
            pending.Inline = false;
            try
            {
                pending.Signal();
            }
            catch (Exception e)
            {
                CoreLog.MaintenanceFailed(_logger, e);
            }
        }
    }

    private static void FailAll(List<PendingRecord> batch, Exception error)
    {
        foreach (var pending in batch)
        {
            pending.Fail(error);
        }
        batch.Clear();
    }

    /// <summary>Fails a batch that was never written (its records' buffers go back to their owners).</summary>
    private void Refuse(List<PendingRecord> batch, Exception failure)
    {
        var refused = new IOException($"The uplink log in {_directory} is unavailable after a failed write ({failure.Message}); it is reopened at most every {ReopenInterval.TotalMilliseconds:0} ms.", failure);
        ReturnBuffers(batch);
        FailAll(batch, refused);
    }

    /// <summary>Gives the buffers of records not (all) enqueued back to their owners.</summary>
    private static void ReturnBuffers(List<PendingRecord> batch)
    {
        foreach (var pending in batch)
        {
            if (pending.Buffer is { } buffer)
            {
                pending.Buffer = null;
                pending.ReleaseBuffer(buffer);
            }
        }
    }

    /// <summary>
    /// Opens the log again after a failed commit. FASTER keeps a failed flush as a permanent error (every later
    /// commit fails with it, even once the disk has room again), so the round (no commit is in flight outside a
    /// round) disposes the log without committing and opens it from its files: it
    /// resumes at its last successful commit, and the failed records after it, none of them acknowledged or applied,
    /// are written over. At most once per <see cref="ReopenInterval"/>; false while it cannot be opened.
    /// A later commit that FASTER failed only because an earlier one had, while its own write landed, can be found
    /// again by the reopen (and by a restart, without this). Its records were refused to their writers and never applied:
    /// a restart before the next checkpoint replays them, as if retried (at-least-once delivery allows it), and that
    /// checkpoint drops them otherwise. Nothing acknowledged is lost either way.
    /// </summary>
    private bool Recover(CancellationToken crash)
    {
        if (Stopwatch.GetElapsedTime(_lastReopenAttempt) < ReopenInterval)
        {
            return false;
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
            var log = FasterLog.CreateAsync(_settings, crash).AsTask().GetAwaiter().GetResult();
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
        Close();
        if (_afterBatch is not null)
        {
            await _stopped.Task;
        }
        WaitForRound();
    }

    /// <summary>Returns once no round runs (a driving thread's may still be in one); later rounds find nothing queued.</summary>
    private void WaitForRound()
    {
        _round.Enter();
        _round.Exit();
    }

    /// <summary>Takes no more records and wakes the commit thread for its last rounds.</summary>
    private void Close()
    {
        lock (_queueGate)
        {
            _closed = true;
        }
        _wake.Release();
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
        await _crash.CancelAsync();
        Close();
        if (_afterBatch is not null)
        {
            await _stopped.Task;
        }
        WaitForRound();
    }
}

/// <summary>Receives one replayed record.</summary>
internal delegate void RecordSink(ReadOnlySpan<byte> record);
