using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
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

internal sealed class LeanSocketListener : IConnectionListener
{
    private readonly Socket _socket;
    private readonly LeanSocketTransportOptions _options;
    private readonly ILogger _logger;

    public LeanSocketListener(Socket socket, LeanSocketTransportOptions options, ILogger logger)
    {
        _socket = socket;
        _options = options;
        _logger = logger;
        EndPoint = socket.LocalEndPoint!;
    }

    public EndPoint EndPoint { get; }

    public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            Socket accepted;
            try
            {
                accepted = await _socket.AcceptAsync(cancellationToken);
            }
            catch (ObjectDisposedException)
            {
                return null;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.OperationAborted)
            {
                return null;
            }
            catch (SocketException ex)
            {
                // A connection reset before it was accepted, or a transient error (EMFILE): keep accepting.
                MqttLog.LeanTransportAcceptFailed(_logger, EndPoint.ToString()!, ex.SocketErrorCode);
                continue;
            }

            try
            {
                // The socket stays in blocking mode (no fcntl): the connection receives and sends with
                // MSG_DONTWAIT and learns readiness from its own epoll set (LeanEpoll).
                return new LeanSocketConnection(accepted, _options.MaxUnsentBytes);
            }
            catch (SocketException ex)
            {
                // The epoll set refused the socket (out of memory): drop this connection, keep accepting.
                MqttLog.LeanTransportAcceptFailed(_logger, EndPoint.ToString()!, ex.SocketErrorCode);
                accepted.Dispose();
            }
        }
    }

    public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
