using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Threading.Tasks.Sources;
using Microsoft.AspNetCore.Connections;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// The receive side of a <see cref="LeanSocketConnection"/>: a <see cref="PipeReader"/> that reads from the
/// socket only when asked. <see cref="ReadAsync"/> returns at once when unexamined data, the peer's FIN,
/// an error or a cancellation is there; otherwise it receives into a pooled buffer when the socket has bytes waiting and,
/// when it has none, posts a zero-byte receive (no buffer) and completes when it fires. The
/// buffer is returned to the pool as soon as everything in it is consumed, so an idle connection holds none.
/// Unconsumed bytes stay at the front of one contiguous buffer (compacted, or copied into a larger one
/// when a message outgrows it), so every result is a single segment.
/// </summary>
internal sealed class LeanSocketReader : PipeReader, IValueTaskSource<ReadResult>
{
    internal const int MinimumBufferSize = 4096;

    private readonly LeanSocketConnection _connection;
    private ReceiveArgs? _receiveArgs;
    private ManualResetValueTaskSourceCore<ReadResult> _source;
    private CancellationTokenRegistration _cancellation;

    // Under lock (this).
    private byte[]? _buffer;
    private int _start;
    private int _end;
    private int _examined;
    private bool _fin;
    private bool _receivePending;
    private bool _readable;
    private bool _readWaiting;
    private bool _cancelNext;
    private bool _completed;
    private Exception? _error;

    public LeanSocketReader(LeanSocketConnection connection)
    {
        _connection = connection;
    }

    /// <summary>Bytes received and not yet consumed (tests).</summary>
    internal int Buffered
    {
        get
        {
            lock (this)
            {
                return _end - _start;
            }
        }
    }

    /// <summary>Whether a pooled buffer is held (tests: an idle connection holds none).</summary>
    internal bool HoldsBuffer
    {
        get
        {
            lock (this)
            {
                return _buffer is not null;
            }
        }
    }

    private ReadOnlySequence<byte> Data => _buffer is null ? ReadOnlySequence<byte>.Empty : new(_buffer, _start, _end - _start);

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        ReadResult result;
        Exception? error;
        lock (this)
        {
            if (_completed)
            {
                throw new InvalidOperationException("Reading is not allowed after the reader was completed.");
            }

            if (_readWaiting)
            {
                throw new InvalidOperationException("Concurrent reads are not supported.");
            }

            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled<ReadResult>(cancellationToken);
            }

            if (!TryGetResult(out result, out error))
            {
                _readWaiting = true;
                _source.Reset();
                if (cancellationToken.CanBeCanceled)
                {
                    _cancellation = cancellationToken.UnsafeRegister(static (state, token) => ((LeanSocketReader)state!).CancelWaitingRead(token), this);
                }

                return new ValueTask<ReadResult>(this, _source.Version);
            }
        }

        return error is null ? new ValueTask<ReadResult>(result) : ValueTask.FromException<ReadResult>(error);
    }

    public override bool TryRead(out ReadResult result)
    {
        lock (this)
        {
            if (_completed)
            {
                throw new InvalidOperationException("Reading is not allowed after the reader was completed.");
            }

            if (_cancelNext)
            {
                _cancelNext = false;
                result = new ReadResult(Data, isCanceled: true, _fin);
                return true;
            }

            if (_error is not null)
            {
                throw _error;
            }

            result = new ReadResult(Data, isCanceled: false, _fin);
            return _end > _start || _fin;
        }
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        lock (this)
        {
            if (_buffer is null)
            {
                // The last result had no data (an empty sequence): nothing to advance.
                return;
            }

            int c = IndexOf(consumed);
            int e = IndexOf(examined);
            if (c < _start || c > _end || e < c || e > _end)
            {
                throw new ArgumentOutOfRangeException(nameof(consumed), "consumed and examined must lie within the last buffer read, consumed <= examined.");
            }

            _start = c;
            _examined = e;
            if (_start == _end)
            {
                ReleaseBuffer();
            }
        }
    }

    public override void CancelPendingRead()
    {
        ReadResult result;
        CancellationTokenRegistration registration;
        lock (this)
        {
            if (!_readWaiting)
            {
                _cancelNext = true;
                return;
            }

            _readWaiting = false;
            result = new ReadResult(Data, isCanceled: true, _fin);
            registration = _cancellation;
            _cancellation = default;
        }

        registration.Dispose();
        _source.SetResult(result);
    }

    public override void Complete(Exception? exception = null)
    {
        lock (this)
        {
            if (_completed)
            {
                return;
            }

            _completed = true;
            ReleaseBuffer();
        }
    }

    ReadResult IValueTaskSource<ReadResult>.GetResult(short token) => _source.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<ReadResult>.GetStatus(short token) => _source.GetStatus(token);

    void IValueTaskSource<ReadResult>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _source.OnCompleted(continuation, state, token, flags);

    /// <summary>
    /// A result, or false with a zero-byte receive pending. Under the lock. Order: a requested cancellation,
    /// a failure, data past <c>examined</c> (or the FIN), then the socket.
    /// </summary>
    private bool TryGetResult(out ReadResult result, out Exception? error)
    {
        error = null;
        result = default;
        if (_cancelNext)
        {
            _cancelNext = false;
            result = new ReadResult(Data, isCanceled: true, _fin);
            return true;
        }

        if (_error is not null)
        {
            error = _error;
            return true;
        }

        if (_end > _examined || _fin)
        {
            result = new ReadResult(Data, isCanceled: false, _fin);
            return true;
        }

        if (_receivePending)
        {
            return false;
        }

        while (true)
        {
            // Receive only when the socket is known to be readable (the zero-byte receive fired or completed at
            // once: data, FIN or error), so the receive never blocks and never waits holding a buffer. Not known:
            // the zero-byte receive below asks the kernel (one recv that completes at once when bytes are waiting),
            // rather than a FIONREAD first, which cost a second system call on every read that found nothing
            // (two per connection setup: issue 12, connect rate).
            var outcome = ReceiveOutcome.WouldBlock;
            if (_readable)
            {
                _readable = false;
                outcome = Receive();
            }

            switch (outcome)
            {
                case ReceiveOutcome.Data:
                case ReceiveOutcome.Fin:
                    result = new ReadResult(Data, isCanceled: false, _fin);
                    return true;
                case ReceiveOutcome.Failed:
                    error = _error;
                    return true;
            }

            // Nothing to read: give the buffer back if it holds nothing, and wait for readability without one.
            if (_start == _end)
            {
                ReleaseBuffer();
            }

            if (PostZeroByteReceive())
            {
                return false;
            }

            if (_error is not null)
            {
                error = _error;
                return true;
            }
        }
    }

    /// <summary>One receive (the socket is readable, so it does not block) into the free end of the buffer (renting, compacting or growing it first).</summary>
    private ReceiveOutcome Receive()
    {
        if (_connection.AbortReason is not null)
        {
            // Aborted (Abort shuts the socket down first, which a pending zero-byte receive reports as readable
            // and a receive as end of stream): the read fails with the abort reason, not a FIN.
            Fail(SocketError.OperationAborted);
            return ReceiveOutcome.Failed;
        }

        if (_buffer is null)
        {
            _buffer = LeanBufferPool.Shared.Rent(MinimumBufferSize);
            _start = _end = _examined = 0;
        }
        else if (_end == _buffer.Length)
        {
            if (_start > 0)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _examined -= _start;
                _start = 0;
            }
            else
            {
                var larger = LeanBufferPool.Shared.Rent(_buffer.Length * 2);
                Buffer.BlockCopy(_buffer, 0, larger, 0, _end);
                LeanBufferPool.Shared.Return(_buffer);
                _buffer = larger;
            }
        }

        int received;
        SocketError status;
        try
        {
            received = _connection.Socket.Receive(_buffer, _end, _buffer.Length - _end, SocketFlags.None, out status);
        }
        catch (ObjectDisposedException)
        {
            Fail(SocketError.OperationAborted);
            return ReceiveOutcome.Failed;
        }

        if (status == SocketError.Success)
        {
            if (received == 0)
            {
                _fin = true;
                _connection.SignalClosed();
                return ReceiveOutcome.Fin;
            }

            _end += received;
            return ReceiveOutcome.Data;
        }

        if (status == SocketError.WouldBlock)
        {
            return ReceiveOutcome.WouldBlock;
        }

        Fail(status);
        return ReceiveOutcome.Failed;
    }

    /// <summary>True when the receive is pending (its completion continues the read); false when it completed at once.</summary>
    private bool PostZeroByteReceive()
    {
        var args = _receiveArgs ??= new ReceiveArgs(this);
        try
        {
            if (_connection.Socket.ReceiveAsync(args))
            {
                _receivePending = true;
                return true;
            }
        }
        catch (ObjectDisposedException)
        {
            Fail(SocketError.OperationAborted);
            return false;
        }

        if (args.SocketError != SocketError.Success)
        {
            Fail(args.SocketError);
        }

        _readable = true;
        return false;
    }

    private void OnReceiveCompleted(SocketAsyncEventArgs args)
    {
        ReadResult result;
        Exception? error;
        CancellationTokenRegistration registration;
        lock (this)
        {
            _receivePending = false;
            if (args.SocketError != SocketError.Success)
            {
                Fail(args.SocketError);
            }

            _readable = true;

            if (!_readWaiting || !TryGetResult(out result, out error))
            {
                return;
            }

            _readWaiting = false;
            registration = _cancellation;
            _cancellation = default;
        }

        registration.Dispose();
        if (error is null)
        {
            _source.SetResult(result);
        }
        else
        {
            _source.SetException(error);
        }
    }

    private void CancelWaitingRead(CancellationToken token)
    {
        lock (this)
        {
            if (!_readWaiting)
            {
                return;
            }

            _readWaiting = false;
            _cancellation = default;
        }

        _source.SetException(new OperationCanceledException(token));
    }

    private void Fail(SocketError status)
    {
        _error ??= _connection.AbortReason ?? status switch
        {
            SocketError.ConnectionReset => new ConnectionResetException("The connection was reset by the peer.", new SocketException((int)status)),
            SocketError.OperationAborted or SocketError.Interrupted or SocketError.Shutdown => new ConnectionAbortedException("The connection was closed.", new SocketException((int)status)),
            _ => new IOException($"Receive failed: {status}.", new SocketException((int)status)),
        };
        _connection.SignalClosed();
    }

    private void ReleaseBuffer()
    {
        if (_buffer is not null)
        {
            LeanBufferPool.Shared.Return(_buffer);
            _buffer = null;
        }

        _start = _end = _examined = 0;
    }

    private int IndexOf(SequencePosition position)
    {
        if (!ReferenceEquals(position.GetObject(), _buffer))
        {
            throw new InvalidOperationException("The position does not belong to the last buffer read.");
        }

        return position.GetInteger();
    }

    private enum ReceiveOutcome
    {
        Data,
        Fin,
        WouldBlock,
        Failed,
    }

    /// <summary>The zero-byte receive: completes when the socket is readable (data, FIN or error).</summary>
    private sealed class ReceiveArgs : SocketAsyncEventArgs
    {
        private readonly LeanSocketReader _reader;

        public ReceiveArgs(LeanSocketReader reader)
            : base(unsafeSuppressExecutionContextFlow: true)
        {
            _reader = reader;
            SetBuffer(Memory<byte>.Empty);
        }

        protected override void OnCompleted(SocketAsyncEventArgs e) => _reader.OnReceiveCompleted(e);
    }
}
