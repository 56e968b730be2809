using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Perf.Coap.Internal;
using Perf.Core;

namespace Perf.Coap;

/// <summary>
/// The CoAP door: one UDP socket, a receive loop over a pooled buffer, one datagram at a time.
/// Binds in <see cref="StartAsync"/> so the port is known when the host reports itself started.
/// </summary>
public sealed class CoapServer : BackgroundService
{
    private readonly ILogger<CoapServer> _logger;
    private readonly CoapOptions _options;
    private readonly IDeviceApi _api;
    private readonly ISessionTable _sessions;
    private readonly ConnectionGuard? _guard;
    private readonly DeviceRateLimits _limits;
    private Socket? _socket;
    private CoapRequestHandler? _handler;

    /// <param name="guard">Wrong-credential blocking per source address and aggregated logging of malformed datagrams; none without it.</param>
    /// <param name="limits">Per-device and per-tenant message rates shared with the other doors; none without it.</param>
    public CoapServer(ILogger<CoapServer> logger, IOptions<CoapOptions> options, IDeviceApi api, ISessionTable sessions,
        ConnectionGuard? guard = null, DeviceRateLimits? limits = null)
    {
        _guard = guard;
        _limits = limits ?? DeviceRateLimits.None;
        _logger = logger;
        _options = options.Value;
        _api = api;
        _sessions = sessions;
    }

    /// <summary>Datagrams dropped as malformed since start.</summary>
    public long MalformedDatagrams => _handler?.MalformedCount ?? 0;

    /// <summary>The bound endpoint, or null before start.</summary>
    public IPEndPoint? LocalEndPoint => _socket?.LocalEndPoint as IPEndPoint;

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        var socket = new Socket(_options.BindAddress.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        if (_options.BindAddress.Equals(IPAddress.IPv6Any))
        {
            // [::] takes IPv4 datagrams too (as mapped addresses), as Kestrel's TCP listeners on [::] do: .NET opens
            // an IPv6 socket IPv6-only, so BIND_ADDRESS=:: otherwise refused every IPv4 CoAP device.
            socket.DualMode = true;
        }

        var endPoint = new IPEndPoint(_options.BindAddress, _options.Port);
        try
        {
            socket.Bind(endPoint);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            // Worded as Kestrel words its own bind failures, so the host names the door the same way for both.
            throw new IOException($"Failed to bind to address udp://{endPoint}: {e.Message}.", e);
        }

        _socket = socket;
        _handler = new CoapRequestHandler(socket, _api, _sessions, _options, _logger, _guard, _limits);
        CoapLog.Listening(_logger, LocalEndPoint!.ToString());
        return base.StartAsync(cancellationToken);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // Cancel the loops first (the pending receive ends with OperationCanceledException), then close:
        // closing first fails the pending receive with SocketError.OperationAborted, which surfaced as a
        // crashed background service on SIGTERM.
        await base.StopAsync(cancellationToken);
        _socket?.Close();
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(ReceiveLoopAsync(stoppingToken), TickLoopAsync(stoppingToken));

    private async Task ReceiveLoopAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        var socket = _socket!;
        var handler = _handler!;
        // 64 KiB: a datagram is never truncated, so an oversized one is seen (and refused) whole.
        var receive = ArrayPool<byte>.Shared.Rent(65536);
        var remote = new SocketAddress(socket.AddressFamily, 32);
        var capacity = remote.Size;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                int received;
                try
                {
                    remote.Size = capacity;
                    received = await socket.ReceiveFromAsync(receive, SocketFlags.None, remote, stoppingToken);
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.MessageSize)
                {
                    // ICMP port unreachable from an earlier send: the peer went away, keep serving.
                    continue;
                }

                try
                {
                    handler.OnDatagram(receive, received, remote);
                }
                catch (Exception ex)
                {
                    // Nothing a peer sends may stop the loop.
                    CoapLog.LoopError(_logger, ex);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Host shutdown.
        }
        catch (ObjectDisposedException)
        {
            // Socket closed by StopAsync.
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.OperationAborted || stoppingToken.IsCancellationRequested)
        {
            // Socket closed under a pending receive during shutdown.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(receive);
        }
    }

    private async Task TickLoopAsync(CancellationToken stoppingToken)
    {
        // 50 ms resolution on the 500 ms piggyback window and the 2 s+ retransmission timers.
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    _handler!.Tick();
                }
                catch (Exception ex)
                {
                    CoapLog.LoopError(_logger, ex);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Host shutdown.
        }
    }

    public override void Dispose()
    {
        _socket?.Dispose();
        base.Dispose();
    }
}
