using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Perf.Core;
using Perf.Kestrel.Tcp.Internal;

namespace Perf.Kestrel.Tcp;

/// <summary>
/// The TCP integration door for one integration (one port): per connection it frames the byte stream with
/// the integration's handler configuration, decodes each frame with the uplink converter, hands each
/// message to <see cref="ITcpUplinkSink"/>, and becomes the downlink session of every device decoded on it.
/// A framing error closes only this connection (or, with <see cref="TcpIntegrationOptions.DropOversizedFrames"/>,
/// skips an oversized frame); converter errors are recorded as events and the connection goes on.
/// </summary>
public sealed class TcpIntegrationHandler : ConnectionHandler
{
    private readonly ITcpUplinkSink _sink;
    private readonly ILogger<TcpIntegrationHandler> _logger;
    private readonly ConnectionGuard? _guard;

    /// <param name="guard">Aggregated logging of framing errors and rejected frames (one Warning per burst); without it they are only Debug lines.</param>
    public TcpIntegrationHandler(TcpIntegration integration, ITcpUplinkSink sink, ILogger<TcpIntegrationHandler> logger, ConnectionGuard? guard = null)
    {
        Integration = integration;
        _sink = sink;
        _logger = logger;
        _guard = guard;
    }

    public TcpIntegration Integration { get; }

    public override Task OnConnectedAsync(ConnectionContext connection)
    {
        if (!Integration.Options.Enabled)
        {
            connection.Abort(new ConnectionAbortedException("integration disabled"));
            return Task.CompletedTask;
        }

        return new TcpConnection(connection, Integration, _sink, _logger, _guard).RunAsync();
    }
}
