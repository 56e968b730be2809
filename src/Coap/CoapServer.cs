using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Perf.Coap.Internal;

namespace Perf.Coap;

/// <summary>
/// The CoAP door: one UDP socket, a receive loop over a pooled buffer, one datagram at a time.
/// Binds in <see cref="StartAsync"/> so the port is known when the host reports itself started.
/// </summary>
public sealed class CoapServer : BackgroundService
{
    private readonly ILogger<CoapServer> _logger;
    private readonly CoapOptions _options;
    private Socket? _socket;

    public CoapServer(ILogger<CoapServer> logger, IOptions<CoapOptions> options)
    {
        _logger = logger;
        _options = options.Value;
    }

    /// <summary>The bound endpoint, or null before start.</summary>
    public IPEndPoint? LocalEndPoint => _socket?.LocalEndPoint as IPEndPoint;

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        var socket = new Socket(_options.BindAddress.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(_options.BindAddress, _options.Port));
        _socket = socket;
        CoapLog.Listening(_logger, LocalEndPoint!.ToString());
        return base.StartAsync(cancellationToken);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _socket?.Close();
        await base.StopAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var socket = _socket!;
        var receive = ArrayPool<byte>.Shared.Rent(_options.MaxDatagramSize);
        var send = ArrayPool<byte>.Shared.Rent(_options.MaxDatagramSize);
        EndPoint any = new IPEndPoint(_options.BindAddress.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                SocketReceiveFromResult received;
                try
                {
                    received = await socket.ReceiveFromAsync(receive, SocketFlags.None, any, stoppingToken);
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
                {
                    // ICMP port unreachable from an earlier send: the peer went away, keep serving.
                    continue;
                }

                var length = CoapResponder.Respond(receive.AsSpan(0, received.ReceivedBytes), send);
                if (length > 0)
                {
                    await socket.SendToAsync(send.AsMemory(0, length), SocketFlags.None, received.RemoteEndPoint, stoppingToken);
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
        finally
        {
            ArrayPool<byte>.Shared.Return(receive);
            ArrayPool<byte>.Shared.Return(send);
        }
    }

    public override void Dispose()
    {
        _socket?.Dispose();
        base.Dispose();
    }
}
