using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Threading.Tasks.Sources;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// The send side of a <see cref="LeanSocketConnection"/>: a <see cref="PipeWriter"/> whose
/// <see cref="FlushAsync"/> sends. Written bytes go to a pooled buffer owned by the writer; a flush hands
/// them to the socket (which sends synchronously when the kernel has room) and, when the socket takes them all (the usual case), returns the buffer to the
/// pool. What the socket does not take goes to one send loop (the only async machinery, started only when
/// the socket is behind); bytes flushed while it runs are queued behind it. When more than
/// <c>maxUnsentBytes</c> are unsent, <see cref="FlushAsync"/> waits until the loop has sent down to half of
/// that (backpressure, as a <see cref="Pipe"/>'s pause and resume thresholds).
/// </summary>
/// <remarks>
/// Single writer, as for any <see cref="PipeWriter"/>: <see cref="GetMemory"/>, <see cref="Advance"/> and
/// <see cref="FlushAsync"/> are not called concurrently, but writing while an earlier flush is still
/// pending is allowed (the MQTT door does that). The writer's buffer is only touched by the writer; the
/// loop only touches the sending and queued buffers, under the lock.
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
    private bool _sendLoopRunning;
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
            if (_completed)
            {
                throw new InvalidOperationException("Writing is not allowed after the writer was completed.");
            }

            if (_cancelNextFlush)
            {
                _cancelNextFlush = false;
                return new ValueTask<FlushResult>(new FlushResult(isCanceled: true, isCompleted: false));
            }

            CommitLocked();
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

    /// <summary>Commits what was written; the socket gets it (sent at once, or by the loop), then the send side is shut down (FIN).</summary>
    public override void Complete(Exception? exception = null)
    {
        bool shutdown;
        lock (this)
        {
            if (_completed)
            {
                return;
            }

            _completed = true;
            CommitLocked();
            DropWriterBuffer();
            shutdown = !_sendLoopRunning && !_failed;
        }

        if (shutdown)
        {
            ShutdownSend();
        }
    }

    /// <summary>Waits (bounded) for the send loop to hand everything to the socket.</summary>
    internal async Task WaitForSendsAsync(TimeSpan timeout)
    {
        Task? loop;
        lock (this)
        {
            loop = _sendLoopRunning ? _sendLoop : null;
        }

        if (loop is not null)
        {
            try
            {
                await loop.WaitAsync(timeout);
            }
            catch (TimeoutException)
            {
            }
        }
    }

    FlushResult IValueTaskSource<FlushResult>.GetResult(short token) => _flush.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<FlushResult>.GetStatus(short token) => _flush.GetStatus(token);

    void IValueTaskSource<FlushResult>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _flush.OnCompleted(continuation, state, token, flags);

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
    /// Hands the written bytes to the socket. Under the lock. Idle socket: a non-blocking send, and
    /// whatever it does not take starts the loop. Loop running: the bytes are queued behind it.
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

        if (!_sendLoopRunning)
        {
            int sent = SendNow(_buffer, _length, out var pending);
            if (sent < 0)
            {
                FailLocked();
                _length = 0;
                return;
            }

            if (sent == _length)
            {
                DropWriterBuffer();
                return;
            }

            _sending = _buffer;
            _sendOffset = sent;
            _sendEnd = _length;
            _buffer = null;
            _length = 0;
            _sendLoopRunning = true;
            if (ExecutionContext.IsFlowSuppressed())
            {
                _sendLoop = SendLoopAsync(pending);
            }
            else
            {
                // The loop outlives the flush that started it: it must not carry the caller's async locals.
                using (ExecutionContext.SuppressFlow())
                {
                    _sendLoop = SendLoopAsync(pending);
                }
            }

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
        var socket = _connection.Socket;
        while (sent < length)
        {
            ValueTask<int> send;
            try
            {
                send = socket.SendAsync(buffer.AsMemory(sent, length - sent), SocketFlags.None);
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
                shutdown = done && _completed;
                if (done)
                {
                    _sendLoopRunning = false;
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

    private void ShutdownSend()
    {
        try
        {
            _connection.Socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
