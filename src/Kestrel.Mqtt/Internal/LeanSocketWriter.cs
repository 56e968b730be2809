using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Threading.Tasks.Sources;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// The send side of a <see cref="LeanSocketConnection"/>: a <see cref="PipeWriter"/> whose
/// <see cref="FlushAsync"/> sends. Written bytes go to a pooled buffer owned by the writer; a flush commits
/// them to the send queue (a buffer swap, no copy when the queue is empty) and then sends the queue
/// (which the socket takes synchronously when the kernel has room), returning each buffer to the pool
/// once sent. One thread at a time sends (the <em>sender</em>); bytes committed while another sender or
/// the send loop is at work are queued behind it and that sender takes them before it stops. What the
/// socket does not take goes to one send loop (the only async machinery, started only when the socket is
/// behind). When more than <c>maxUnsentBytes</c> are unsent, <see cref="FlushAsync"/> waits until the
/// loop has sent down to half of that (backpressure, as a <see cref="Pipe"/>'s pause and resume thresholds).
/// </summary>
/// <remarks>
/// <para>Single writer, as for any <see cref="PipeWriter"/>: <see cref="GetMemory"/>, <see cref="Advance"/>,
/// <see cref="FlushAsync"/> and <see cref="CommitAsync"/> are not called concurrently, but writing while an
/// earlier flush is still pending is allowed (the MQTT door does that). The writer's buffer is only
/// touched by the writer; the queue and the sending buffer only under the lock, by the sender.</para>
/// <para>Swap-buffer flush (issue 12 target 7): a writer shared by several threads under the caller's own
/// lock (the MQTT door's write lock: REST threads pushing RPC requests, the read loop's PUBACKs) calls
/// <see cref="CommitAsync"/> under that lock, which only moves the bytes to the queue, and
/// <see cref="SendCommitted"/> after leaving it, so no thread waits on the caller's lock for a socket send.</para>
/// </remarks>
internal sealed class LeanSocketWriter : PipeWriter, IValueTaskSource<FlushResult>
{
    private readonly LeanSocketConnection _connection;
    private readonly int _maxUnsentBytes;
    private ManualResetValueTaskSourceCore<FlushResult> _flush;

    // Owned by the writer.
    private byte[]? _buffer;
    private int _length;

    // Under lock (this).
    private byte[]? _sending;
    private int _sendOffset;
    private int _sendEnd;
    private byte[]? _queued;
    private int _queuedLength;
    private Task? _sendLoop;
    /// <summary>A sender owns the socket's send side: an inline <see cref="SendCommitted"/> or the send loop.</summary>
    private bool _sendActive;
    private bool _sendLoopRunning;
    private bool _shutdown;
    private bool _flushWaiting;
    private bool _cancelNextFlush;
    private bool _completed;
    private bool _failed;

    public LeanSocketWriter(LeanSocketConnection connection, int maxUnsentBytes)
    {
        _connection = connection;
        _maxUnsentBytes = maxUnsentBytes;
        _flush.RunContinuationsAsynchronously = true;
    }

    public override bool CanGetUnflushedBytes => true;

    public override long UnflushedBytes => _length;

    /// <summary>Flushed bytes the socket has not taken yet (tests).</summary>
    internal int Unsent
    {
        get
        {
            lock (this)
            {
                return UnsentLocked;
            }
        }
    }

    /// <summary>Whether any pooled buffer is held (tests: an idle connection holds none).</summary>
    internal bool HoldsBuffer
    {
        get
        {
            lock (this)
            {
                return _buffer is not null || _sending is not null || _queued is not null;
            }
        }
    }

    private int UnsentLocked => (_sending is null ? 0 : _sendEnd - _sendOffset) + _queuedLength;

    public override Memory<byte> GetMemory(int sizeHint = 0) => Reserve(sizeHint).AsMemory(_length);

    public override Span<byte> GetSpan(int sizeHint = 0) => Reserve(sizeHint).AsSpan(_length);

    public override void Advance(int bytes)
    {
        if (bytes < 0 || (bytes > 0 && (_buffer is null || _length + bytes > _buffer.Length)))
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), "Advanced past the memory returned by GetMemory/GetSpan.");
        }

        _length += bytes;
    }

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        lock (this)
        {
            if (TryCommitLocked(out var early))
            {
                return early;
            }
        }

        SendCommitted();
        return WaitForRoom(cancellationToken);
    }

    /// <summary>
    /// <see cref="FlushAsync"/> without the send: commits what was written to the send queue (for a caller
    /// holding its own lock) and completes when the unsent bytes are within the limit. The bytes leave with
    /// the next <see cref="SendCommitted"/>, which the caller must make after leaving its lock (a pending
    /// result is only released by sending).
    /// </summary>
    internal ValueTask<FlushResult> CommitAsync(CancellationToken cancellationToken = default)
    {
        lock (this)
        {
            if (TryCommitLocked(out var early))
            {
                return early;
            }
        }

        return WaitForRoom(cancellationToken);
    }

    /// <summary>
    /// Sends the committed bytes from this thread while the socket takes them at once; what it does not take
    /// goes to the send loop. Returns at once when another thread or the loop is sending (it takes these
    /// bytes before it stops). Bytes committed meanwhile by other threads are sent in the same call.
    /// </summary>
    internal void SendCommitted()
    {
        byte[] sending;
        int length;
        lock (this)
        {
            if (!TakeQueueLocked())
            {
                return;
            }

            sending = _sending!;
            length = _sendEnd;
        }

        while (true)
        {
            int sent = SendNow(sending, length, out var pending);
            bool release;
            bool shutdown = false;
            lock (this)
            {
                if (sent < 0)
                {
                    FailLocked();
                    release = TakeFlushWaiter();
                }
                else if (sent < length)
                {
                    // The socket is behind: the loop owns the rest (and what is queued behind it).
                    _sendOffset = sent;
                    _sendLoopRunning = true;
                    StartSendLoopLocked(pending);
                    return;
                }
                else
                {
                    LeanBufferPool.Shared.Return(sending);
                    _sending = null;
                    _sendActive = false;
                    release = _flushWaiting && UnsentLocked <= _maxUnsentBytes / 2 && TakeFlushWaiter();
                    if (TakeQueueLocked())
                    {
                        sending = _sending!;
                        length = _sendEnd;
                    }
                    else
                    {
                        sending = null!;
                        shutdown = TakeShutdownLocked();
                    }
                }
            }

            if (release)
            {
                _flush.SetResult(new FlushResult(isCanceled: false, isCompleted: sent < 0));
            }

            if (sent < 0)
            {
                return;
            }

            if (sending is null)
            {
                if (shutdown)
                {
                    ShutdownSend();
                }

                return;
            }
        }
    }

    public override void CancelPendingFlush()
    {
        lock (this)
        {
            if (!_flushWaiting)
            {
                _cancelNextFlush = true;
                return;
            }

            _flushWaiting = false;
        }

        _flush.SetResult(new FlushResult(isCanceled: true, isCompleted: false));
    }

    /// <summary>Commits what was written; the socket gets it (sent at once, or by the sender at work), then the send side is shut down (FIN).</summary>
    public override void Complete(Exception? exception = null)
    {
        lock (this)
        {
            if (_completed)
            {
                return;
            }

            _completed = true;
            CommitLocked();
            DropWriterBuffer();
        }

        SendCommitted();
        bool shutdown;
        lock (this)
        {
            // When a sender is still at work (another thread, or the loop), it shuts down once it has sent everything.
            shutdown = TakeShutdownLocked();
        }

        if (shutdown)
        {
            ShutdownSend();
        }
    }

    /// <summary>Waits (bounded) for the sender at work (the send loop, or another thread's inline send) to hand everything to the socket.</summary>
    internal async Task WaitForSendsAsync(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (true)
        {
            Task? loop;
            lock (this)
            {
                if (!_sendActive)
                {
                    return;
                }

                loop = _sendLoopRunning ? _sendLoop : null;
            }

            long left = deadline - Environment.TickCount64;
            if (left <= 0)
            {
                return;
            }

            if (loop is null)
            {
                // Another thread's inline send: a non-blocking syscall that ends at once or hands over to the loop.
                await Task.Yield();
                continue;
            }

            try
            {
                await loop.WaitAsync(TimeSpan.FromMilliseconds(left));
            }
            catch (TimeoutException)
            {
                return;
            }
        }
    }

    FlushResult IValueTaskSource<FlushResult>.GetResult(short token) => _flush.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<FlushResult>.GetStatus(short token) => _flush.GetStatus(token);

    void IValueTaskSource<FlushResult>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _flush.OnCompleted(continuation, state, token, flags);

    /// <summary>The flush's checks and the commit, under the lock; true with the answer when it is decided here.</summary>
    private bool TryCommitLocked(out ValueTask<FlushResult> early)
    {
        if (_completed)
        {
            throw new InvalidOperationException("Writing is not allowed after the writer was completed.");
        }

        if (_cancelNextFlush)
        {
            _cancelNextFlush = false;
            early = new ValueTask<FlushResult>(new FlushResult(isCanceled: true, isCompleted: false));
            return true;
        }

        CommitLocked();
        early = default;
        return false;
    }

    /// <summary>After a commit (and a send): done when the unsent bytes are within the limit, else waits for the loop to send them down to half.</summary>
    private ValueTask<FlushResult> WaitForRoom(CancellationToken cancellationToken)
    {
        lock (this)
        {
            if (_failed)
            {
                // The socket is gone (error, abort): as when a pipe's reader has completed.
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: true));
            }

            if (UnsentLocked <= _maxUnsentBytes)
            {
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: false, isCompleted: false));
            }

            if (_flushWaiting)
            {
                throw new InvalidOperationException("Concurrent flushes are not supported.");
            }

            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled<FlushResult>(cancellationToken);
            }

            _flushWaiting = true;
            _flush.Reset();
            if (cancellationToken.CanBeCanceled)
            {
                // Rare (backpressure with a token): the registration is not kept; a late callback finds no waiter.
                cancellationToken.UnsafeRegister(static (state, token) => ((LeanSocketWriter)state!).CancelWaitingFlush(token), this);
            }

            return new ValueTask<FlushResult>(this, _flush.Version);
        }
    }

    /// <summary>Under the lock: when nobody sends and bytes are queued, makes the caller the sender of the queue (now <see cref="_sending"/>).</summary>
    private bool TakeQueueLocked()
    {
        if (_sendActive || _failed || _queued is null)
        {
            return false;
        }

        _sendActive = true;
        _sending = _queued;
        _sendOffset = 0;
        _sendEnd = _queuedLength;
        _queued = null;
        _queuedLength = 0;
        return true;
    }

    /// <summary>Under the lock: whether the caller shuts the send side down now (completed, everything sent, once).</summary>
    private bool TakeShutdownLocked()
    {
        if (!_completed || _sendActive || _failed || _queued is not null || _shutdown)
        {
            return false;
        }

        _shutdown = true;
        return true;
    }

    private void StartSendLoopLocked(ValueTask<int> pending)
    {
        if (ExecutionContext.IsFlowSuppressed())
        {
            _sendLoop = SendLoopAsync(pending);
            return;
        }

        // The loop outlives the flush that started it: it must not carry the caller's async locals.
        using (ExecutionContext.SuppressFlow())
        {
            _sendLoop = SendLoopAsync(pending);
        }
    }

    private byte[] Reserve(int sizeHint)
    {
        if (_completed)
        {
            throw new InvalidOperationException("Writing is not allowed after the writer was completed.");
        }

        int need = Math.Max(sizeHint, 1);
        if (_buffer is null)
        {
            _buffer = LeanBufferPool.Shared.Rent(Math.Max(need, LeanSocketReader.MinimumBufferSize));
            _length = 0;
        }
        else if (_buffer.Length - _length < need)
        {
            var larger = LeanBufferPool.Shared.Rent(Math.Max(_buffer.Length * 2, _length + need));
            Buffer.BlockCopy(_buffer, 0, larger, 0, _length);
            LeanBufferPool.Shared.Return(_buffer);
            _buffer = larger;
        }

        return _buffer;
    }

    /// <summary>
    /// Moves the written bytes to the send queue, under the lock: the writer's buffer becomes the queue when
    /// the queue is empty (a swap), else the bytes are appended to it. Nothing is sent here.
    /// </summary>
    private void CommitLocked()
    {
        if (_length == 0 || _buffer is null)
        {
            return;
        }

        if (_failed)
        {
            _length = 0;
            return;
        }

        if (_queued is null)
        {
            _queued = _buffer;
            _queuedLength = _length;
            _buffer = null;
            _length = 0;
            return;
        }

        if (_queued.Length - _queuedLength < _length)
        {
            var larger = LeanBufferPool.Shared.Rent(Math.Max(_queued.Length * 2, _queuedLength + _length));
            Buffer.BlockCopy(_queued, 0, larger, 0, _queuedLength);
            LeanBufferPool.Shared.Return(_queued);
            _queued = larger;
        }

        Buffer.BlockCopy(_buffer, 0, _queued, _queuedLength, _length);
        _queuedLength += _length;
        DropWriterBuffer();
    }

    /// <summary>
    /// Sends while the socket takes the bytes at once (the socket's send completes synchronously when the
    /// kernel has room): bytes taken, with <paramref name="pending"/> the send still under way if the socket
    /// is behind, or -1 when the socket failed.
    /// </summary>
    private int SendNow(byte[] buffer, int length, out ValueTask<int> pending)
    {
        int sent = 0;
        pending = default;
        // A plain send(MSG_DONTWAIT) first: Socket.SendAsync(Memory) needs a Socket (made on first use, about
        // 0.1 KB) and creates its awaitable event args (about 0.3 KB), both kept for the connection's life. Only
        // a socket that is behind (EAGAIN) goes on with SendAsync below.
        while (sent < length)
        {
            int written = LeanEpoll.Send(_connection.Handle, buffer, sent, length - sent, out var error);
            if (error == SocketError.WouldBlock)
            {
                break;
            }

            if (error != SocketError.Success)
            {
                return -1;
            }

            sent += written;
        }

        while (sent < length)
        {
            ValueTask<int> send;
            try
            {
                send = _connection.Socket.SendAsync(buffer.AsMemory(sent, length - sent), SocketFlags.None);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return -1;
            }

            if (!send.IsCompleted)
            {
                pending = send;
                return sent;
            }

            if (!send.IsCompletedSuccessfully)
            {
                _ = send.AsTask().Exception;
                return -1;
            }

            sent += send.Result;
        }

        return sent;
    }

    private async Task SendLoopAsync(ValueTask<int> pending)
    {
        var socket = _connection.Socket;
        while (true)
        {
            int sent;
            try
            {
                sent = await pending;
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                bool release;
                lock (this)
                {
                    FailLocked();
                    release = TakeFlushWaiter();
                }

                if (release)
                {
                    _flush.SetResult(new FlushResult(isCanceled: false, isCompleted: true));
                }

                return;
            }

            bool resume;
            bool done;
            bool shutdown;
            ReadOnlyMemory<byte> chunk = default;
            lock (this)
            {
                _sendOffset += sent;
                if (_sendOffset >= _sendEnd)
                {
                    LeanBufferPool.Shared.Return(_sending!);
                    _sending = _queued;
                    _sendOffset = 0;
                    _sendEnd = _queuedLength;
                    _queued = null;
                    _queuedLength = 0;
                }

                resume = _flushWaiting && UnsentLocked <= _maxUnsentBytes / 2 && TakeFlushWaiter();
                done = _sending is null;
                shutdown = false;
                if (done)
                {
                    _sendLoopRunning = false;
                    _sendActive = false;
                    shutdown = TakeShutdownLocked();
                }
                else
                {
                    chunk = _sending.AsMemory(_sendOffset, _sendEnd - _sendOffset);
                }
            }

            if (resume)
            {
                _flush.SetResult(new FlushResult(isCanceled: false, isCompleted: false));
            }

            if (done)
            {
                if (shutdown)
                {
                    ShutdownSend();
                }

                return;
            }

            try
            {
                pending = socket.SendAsync(chunk, SocketFlags.None);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                pending = ValueTask.FromException<int>(ex);
            }
        }
    }

    private bool TakeFlushWaiter()
    {
        if (!_flushWaiting)
        {
            return false;
        }

        _flushWaiting = false;
        return true;
    }

    private void CancelWaitingFlush(CancellationToken token)
    {
        lock (this)
        {
            if (!_flushWaiting)
            {
                return;
            }

            _flushWaiting = false;
        }

        _flush.SetException(new OperationCanceledException(token));
    }

    private void FailLocked()
    {
        _failed = true;
        _sendLoopRunning = false;
        _sendActive = false;
        if (_sending is not null)
        {
            LeanBufferPool.Shared.Return(_sending);
            _sending = null;
        }

        if (_queued is not null)
        {
            LeanBufferPool.Shared.Return(_queued);
            _queued = null;
            _queuedLength = 0;
        }

        _connection.SignalClosed();
    }

    private void DropWriterBuffer()
    {
        if (_buffer is not null)
        {
            LeanBufferPool.Shared.Return(_buffer);
            _buffer = null;
        }

        _length = 0;
    }

    private void ShutdownSend() => _connection.Handle.Shutdown(SocketShutdown.Send);
}
