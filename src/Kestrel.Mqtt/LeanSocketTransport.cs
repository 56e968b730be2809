using System.Net;
using System.Net.Sockets;
using System.Threading.Tasks.Sources;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Kestrel.Mqtt;

/// <summary>Settings of the lean socket transport (<see cref="LeanSocketTransportFactory"/>).</summary>
public sealed class LeanSocketTransportOptions
{
    /// <summary>Listen backlog (the kernel caps it at somaxconn).</summary>
    public int Backlog { get; set; } = 512;

    /// <summary>Flushed bytes a connection may have unsent before <c>FlushAsync</c> waits (a pipe's pause threshold; Kestrel's default is 64 KiB).</summary>
    public int MaxUnsentBytes { get; set; } = 64 * 1024;

    /// <summary>TCP_NODELAY on accepted sockets (Kestrel's default too).</summary>
    public bool NoDelay { get; set; } = true;
}

/// <summary>
/// A lean transport connection's end: one callback, run once when the connection is disposed (after its handler
/// returned and its last bytes were handed to the socket). Connection middleware that counts open connections uses it
/// instead of an async frame around the handler that every open connection would hold (issue 12: about 0.1 KB each).
/// </summary>
/// <remarks>
/// Kestrel's own <c>IConnectionCompleteFeature</c> would do the same on every transport, but its first callback makes a
/// stack and its array (120 bytes per connection, the frame's cost again); this one is two fields of the connection.
/// </remarks>
public interface ILeanConnectionEndFeature
{
    /// <summary>Sets the callback; false when one is already set or the connection is already disposed.</summary>
    bool TryOnEnd(Action<object> callback, object state);
}

/// <summary>
/// An endpoint to be served by the lean socket transport: listen on it with Kestrel
/// (<c>kestrel.Listen(new LeanEndPoint(address, port), ...)</c>) and register
/// <see cref="LeanSocketTransportFactory"/>; every other endpoint stays on Kestrel's socket transport.
/// </summary>
public sealed class LeanEndPoint : IPEndPoint
{
    public LeanEndPoint(IPAddress address, int port)
        : base(address, port)
    {
    }
}

/// <summary>
/// Kestrel transport for the device doors: one small object per accepted socket instead of Kestrel's
/// socket connection with its two pipes and two loops (see <c>LeanSocketConnection</c>). It binds only
/// <see cref="LeanEndPoint"/>s (<see cref="IConnectionListenerFactorySelector"/>); Kestrel asks the factories
/// registered last first, so registering this one after <c>UseSockets</c> leaves HTTP, REST and gRPC on
/// Kestrel's transport. Connection middleware (TLS) works unchanged: it only needs the
/// <see cref="ConnectionContext"/> and its <c>Transport</c>.
/// </summary>
public sealed class LeanSocketTransportFactory : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    private readonly LeanSocketTransportOptions _options;
    private readonly ILogger _logger;
    private int _bound;

    public LeanSocketTransportFactory(LeanSocketTransportOptions options, ILoggerFactory loggers)
    {
        _options = options;
        _logger = loggers.CreateLogger("Perf.Kestrel.Mqtt.LeanSocketTransport");
    }

    /// <summary>Endpoints bound by this factory so far (the host reports it; tests check it).</summary>
    public int BoundCount => Volatile.Read(ref _bound);

    /// <summary>
    /// Linux only (the transport waits on epoll itself); elsewhere a <see cref="LeanEndPoint"/> falls through to
    /// Kestrel's socket transport, which binds any IP endpoint.
    /// </summary>
    public bool CanBind(EndPoint endpoint) => endpoint is LeanEndPoint && OperatingSystem.IsLinux();

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default)
    {
        if (endpoint is not IPEndPoint ip)
        {
            throw new NotSupportedException($"The lean socket transport binds IP endpoints only, not {endpoint}.");
        }

        var socket = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (ip.Address.Equals(IPAddress.IPv6Any))
            {
                socket.DualMode = true;
            }

            // Accepted sockets inherit TCP_NODELAY from the listening socket on Linux: one setsockopt per
            // connect less than setting it on each (issue 12, connect rate).
            socket.NoDelay = _options.NoDelay;
            socket.Bind(new IPEndPoint(ip.Address, ip.Port));
            socket.Listen(_options.Backlog);
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            socket.Dispose();
            throw new AddressInUseException(ex.Message, ex);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        Interlocked.Increment(ref _bound);
        var listener = new LeanSocketListener(socket, _options, _logger);
        MqttLog.LeanTransportBound(_logger, listener.EndPoint.ToString()!);
        return new ValueTask<IConnectionListener>(listener);
    }
}

/// <summary>
/// A listening socket on the lean transport's epoll thread: <c>accept4</c> takes each connection without a
/// <see cref="Socket"/> object (<see cref="LeanSocketHandle"/>); when the backlog is empty the accept waits for the
/// listener's next edge from the epoll set, which wakes the waiting accept on the pool.
/// </summary>
internal sealed class LeanSocketListener : IConnectionListener, IValueTaskSource<bool>
{
    /// <summary>The pause before an accept that ran out of descriptors or memory is tried again.</summary>
    private const int StarvedRetryMs = 50;

    /// <summary>
    /// Descriptors the door leaves to the rest of the process (the runtime's threads, storage files, REST connections):
    /// it stops accepting once an accepted descriptor's number is within this many of the open-file limit. A new
    /// runtime thread opens two or three descriptors as it starts and aborts the process ("Out of memory.") when it
    /// cannot, so the door must not take the last ones even for a moment.
    /// </summary>
    /// <remarks>
    /// The kernel gives the lowest free number, so an accepted number N means N descriptors below it are in use, and
    /// the door stops with at least this many free above it. It resumes once the lowest free number is twice this far
    /// below the limit. The first design held 64 descriptors on <c>/dev/null</c> and gave them back when an accept
    /// failed; but from the accept that took the last free descriptor to the failing one after it, nothing was free,
    /// and a thread starting then aborted the process (once in a CI run).
    /// </remarks>
    internal const int SpareDescriptors = 64;
    private const long StarvedLogIntervalMs = 10_000;

    private const int Idle = 0;
    private const int Waiting = 1;
    private const int Signaled = 2;

    private readonly Socket _socket;
    private readonly LeanSocketTransportOptions _options;
    private readonly ILogger _logger;
    private readonly nint _epollToken;

    /// <summary>The local endpoint every accepted connection shares, when the listener is bound to one address.</summary>
    private readonly IPEndPoint? _sharedLocal;
    private ManualResetValueTaskSourceCore<bool> _readable = new() { RunContinuationsAsynchronously = true };
    private int _state;
    private int _closing;
    private int _starvedRetries;

    /// <summary>Set when the last accepted descriptor came within <see cref="SpareDescriptors"/> of the limit: the next accept waits first.</summary>
    private bool _low;

    /// <summary>The process's open-file limit (soft), read at start and again while waiting for descriptors.</summary>
    private int _descriptorLimit = LeanSocketHandle.DescriptorLimit();
    private long _starvedLoggedAt = long.MinValue / 2;
    private volatile bool _closed;

    public LeanSocketListener(Socket socket, LeanSocketTransportOptions options, ILogger logger)
    {
        _socket = socket;
        _options = options;
        _logger = logger;
        EndPoint = socket.LocalEndPoint!;
        var local = (IPEndPoint)EndPoint;
        _sharedLocal = local.Address.Equals(IPAddress.Any) || local.Address.Equals(IPAddress.IPv6Any) ? null : local;
        _socket.Blocking = false;
        _epollToken = LeanEpoll.Shared.Register(socket.SafeHandle, this);
    }

    public EndPoint EndPoint { get; }

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            if (_closed)
            {
                return null;
            }

            cancellationToken.ThrowIfCancellationRequested();
            if (_low)
            {
                await WaitForDescriptorsAsync(Errno.EMFILE, cancellationToken);
                continue;
            }

            int fd = LeanSocketHandle.Accept(_socket.SafeHandle, out var peer, out int errno);
            if (fd >= 0)
            {
                // This connection is served; the next accept waits if it took one of the last descriptors.
                _low = fd >= _descriptorLimit - SpareDescriptors;
                var handle = new LeanSocketHandle(fd);
                try
                {
                    return new LeanSocketConnection(handle, peer, _sharedLocal, _options.MaxUnsentBytes);
                }
                catch (SocketException ex)
                {
                    // The epoll set refused the socket (out of memory): drop this connection, keep accepting.
                    MqttLog.LeanTransportAcceptFailed(_logger, EndPoint.ToString()!, ex.SocketErrorCode);
                    handle.Dispose();
                    continue;
                }
            }

            switch (errno)
            {
                case Errno.EAGAIN:
                    // The backlog is empty: wait for the listener's next edge (a new connection), or its close.
                    if (cancellationToken.CanBeCanceled)
                    {
                        using (cancellationToken.UnsafeRegister(static s => ((LeanSocketListener)s!).OnReadable(), this))
                        {
                            await WaitReadableAsync();
                        }
                    }
                    else
                    {
                        await WaitReadableAsync();
                    }

                    break;
                case Errno.EBADF or Errno.EINVAL:
                    // Closed (UnbindAsync, DisposeAsync).
                    return null;
                case Errno.EMFILE or Errno.ENFILE or Errno.ENOBUFS or Errno.ENOMEM:
                    // Out of descriptors (taken by the rest of the process) or memory: the connection stays in the
                    // backlog and the listener stays readable, so retrying at once would spin.
                    _low = true;
                    await WaitForDescriptorsAsync(errno, cancellationToken);
                    break;
                default:
                    // A connection reset before it was accepted (ECONNABORTED), or a protocol error: keep accepting.
                    MqttLog.LeanTransportAcceptFailed(_logger, EndPoint.ToString()!, LeanEpoll.ToSocketError(errno));
                    break;
            }
        }
    }

    /// <summary>
    /// Waits, 50 ms at a time, until the lowest free descriptor is 2 x <see cref="SpareDescriptors"/> below the limit
    /// (connections have closed). One Warning per 10 s of it, with the count, rather than one per retry.
    /// </summary>
    private async ValueTask WaitForDescriptorsAsync(int errno, CancellationToken cancellationToken)
    {
        _starvedRetries++;
        long now = Environment.TickCount64;
        if (now - _starvedLoggedAt >= StarvedLogIntervalMs)
        {
            MqttLog.LeanTransportAcceptStarved(_logger, EndPoint.ToString()!, LeanEpoll.ToSocketError(errno), SpareDescriptors, _starvedRetries);
            _starvedLoggedAt = now;
            _starvedRetries = 0;
        }

        while (!_closed)
        {
            await Task.Delay(StarvedRetryMs, cancellationToken);
            _descriptorLimit = LeanSocketHandle.DescriptorLimit();
            if (LeanSocketHandle.LowestFreeDescriptor() is int free and >= 0 && free < _descriptorLimit - 2 * SpareDescriptors)
            {
                _low = false;
                return;
            }
        }
    }

    /// <summary>On the epoll thread (a new connection in the backlog) or at close: wakes a waiting accept, or marks the edge for the next one.</summary>
    internal void OnReadable()
    {
        while (true)
        {
            int state = Volatile.Read(ref _state);
            if (state == Waiting)
            {
                if (Interlocked.CompareExchange(ref _state, Idle, Waiting) == Waiting)
                {
                    _readable.SetResult(true);
                    return;
                }
            }
            else if (state == Signaled || Interlocked.CompareExchange(ref _state, Signaled, Idle) == Idle)
            {
                return;
            }
        }
    }

    private ValueTask<bool> WaitReadableAsync()
    {
        _readable.Reset();
        if (Interlocked.CompareExchange(ref _state, Waiting, Idle) == Signaled)
        {
            // An edge came after the last accept found the backlog empty: accept again.
            Volatile.Write(ref _state, Idle);
            return new ValueTask<bool>(true);
        }

        return new ValueTask<bool>(this, _readable.Version);
    }

    bool IValueTaskSource<bool>.GetResult(short token) => _readable.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _readable.GetStatus(token);

    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _readable.OnCompleted(continuation, state, token, flags);

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        Close();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        Close();
        return ValueTask.CompletedTask;
    }

    private void Close()
    {
        if (Interlocked.Exchange(ref _closing, 1) != 0)
        {
            return;
        }

        _closed = true;
        LeanEpoll.Shared.Deregister(_socket.SafeHandle, _epollToken);
        _socket.Dispose();
        OnReadable();
    }
}
