using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Threading.Tasks.Sources;
using Microsoft.AspNetCore.Connections;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// The receive side of a <see cref="LeanSocketConnection"/>: a <see cref="PipeReader"/> that reads from the
/// socket only when asked. <see cref="ReadAsync"/> returns at once when unexamined data, the peer's FIN,
/// an error or a cancellation is there; otherwise it receives into a pooled buffer when the socket may have
/// bytes waiting and, when it has none, waits (holding no buffer) for the socket's next readiness edge from
/// <see cref="LeanEpoll"/>, which a pool thread turns into the receive and the read's completion. The
/// buffer is returned to the pool as soon as everything in it is consumed, so an idle connection holds none.
/// Unconsumed bytes stay at the front of one contiguous buffer (compacted, or copied into a larger one
/// when a message outgrows it), so every result is a single segment.
/// </summary>
internal sealed class LeanSocketReader : PipeReader, IValueTaskSource<ReadResult>
{
    internal const int MinimumBufferSize = 4096;

    private readonly LeanSocketConnection _connection;
    private ManualResetValueTaskSourceCore<ReadResult> _source;
    private CancellationTokenRegistration _cancellation;

    // Under lock (this).
    private byte[]? _buffer;
    private int _start;
    private int _end;
    private int _examined;
    private bool _fin;

    // An edge (or a receive that filled the buffer) says bytes, a FIN or an error may be waiting. A receive
    // that leaves room in the buffer drained the socket, so the next bytes raise a new edge: no receive is
    // made just to hear EAGAIN.
    private bool _readable;

    // The last edge carried RDHUP/HUP/ERR: the end is queued behind the data, and no edge will announce it
    // again, so reads go on receiving until they see it.
    private bool _hangUp;

    // The waiting read is being finished, or is due to be (by the epoll loop, or by a pool work item for a dispatched one).
    private bool _dispatched;

    /// <summary>
    /// Reads this reader completed at once on the epoll thread since the loop last completed its waiting read; past
    /// <see cref="MaxReadsAtOnce"/> the next read waits for the loop's next pass (<see cref="LeanEpoll.Yield"/>).
    /// </summary>
    private int _readsAtOnce;

    /// <summary>
    /// Reads a connection may complete at once on the epoll thread before it lets the others have it: a peer that
    /// keeps its socket full would otherwise keep the one thread that reads (and commits for) every connection.
    /// </summary>
    internal const int MaxReadsAtOnce = 8;
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

            bool yielding = LeanEpoll.IsLoopThread && ++_readsAtOnce > MaxReadsAtOnce;
            if (yielding || !TryGetResult(out result, out error))
            {
                _readWaiting = true;
                _source.Reset();
                if (cancellationToken.CanBeCanceled)
                {
                    _cancellation = cancellationToken.UnsafeRegister(static (state, token) => ((LeanSocketReader)state!).CancelWaitingRead(token), this);
                }

                if (yielding)
                {
                    // Dispatched already: the loop completes it on its next pass, and edges meanwhile only mark the
                    // socket readable.
                    _dispatched = true;
                    LeanEpoll.Shared.Yield(this);
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
    /// A result, or false to wait for the socket's next edge. Under the lock. Order: a requested cancellation,
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

        // Receive only when the socket may have something (an edge since the last receive that drained it),
        // so the receive never blocks and no receive is made just to hear EAGAIN (issue 12: system calls per
        // read cycle and per connect).
        var outcome = _readable ? Receive() : ReceiveOutcome.WouldBlock;
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

        // Nothing to read: give the buffer back if it holds nothing, and wait for the next edge without one.
        if (_start == _end)
        {
            ReleaseBuffer();
        }

        return false;
    }

    /// <summary>One receive (the socket is readable, so it does not block) into the free end of the buffer (renting, compacting or growing it first).</summary>
    private ReceiveOutcome Receive()
    {
        if (_connection.AbortReason is not null)
        {
            // Aborted (Abort shuts the socket down and wakes the reader, and a receive on that socket would
            // report end of stream): the read fails with the abort reason, not a FIN.
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
        int space = _buffer.Length - _end;
        received = LeanEpoll.Receive(_connection.Handle, _buffer, _end, space, out status);
        if (status == SocketError.Success)
        {
            if (received == 0)
            {
                _fin = true;
                _connection.SignalClosed();
                return ReceiveOutcome.Fin;
            }

            _end += received;
            _readable = received == space || _hangUp;
            return ReceiveOutcome.Data;
        }

        if (status == SocketError.WouldBlock)
        {
            _readable = false;
            return ReceiveOutcome.WouldBlock;
        }

        Fail(status);
        return ReceiveOutcome.Failed;
    }

    /// <summary>
    /// The epoll thread's edge for this socket (<paramref name="events"/>: EPOLLIN, RDHUP, HUP, ERR): marks it
    /// readable; true when a read is waiting and the caller must run <see cref="CompleteWaitingRead"/> (once: further
    /// edges return false until it has run).
    /// </summary>
    internal bool OnReadiness(uint events)
    {
        lock (this)
        {
            _readable = true;
            if ((events & (LeanEpoll.EPOLLRDHUP | LeanEpoll.EPOLLHUP | LeanEpoll.EPOLLERR)) != 0)
            {
                _hangUp = true;
            }

            if (!_readWaiting || _dispatched)
            {
                return false;
            }

            _dispatched = true;
            return true;
        }
    }

    /// <summary>After an edge, on the epoll thread (or a pool thread for a dispatched one): receive and complete the waiting read (its continuation runs here).</summary>
    internal void CompleteWaitingRead()
    {
        ReadResult result;
        Exception? error;
        CancellationTokenRegistration registration;
        lock (this)
        {
            _dispatched = false;
            _readsAtOnce = 0;
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
}
