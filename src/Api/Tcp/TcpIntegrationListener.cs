using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Options;
using Perf.Api.Hosting;
using Perf.Kestrel.Tcp;

namespace Perf.Api.Tcp;

/// <summary>
/// The listener of one integration created at runtime: a Kestrel server of its own (socket transport with
/// the integration's <c>soBacklogOption</c>) whose only endpoint runs the TCP door. The handler is swapped
/// in place when the integration's configuration changes without a new port, so a converter edit does not
/// rebind; connections already open finish on the configuration they started with.
/// </summary>
internal sealed class TcpIntegrationListener : IAsyncDisposable
{
    private readonly KestrelServer _server;
    private readonly IServiceProvider _services;
    private volatile TcpIntegrationHandler _handler;

    private TcpIntegrationListener(KestrelServer server, TcpIntegrationHandler handler, IServiceProvider services, int backlog)
    {
        _server = server;
        _handler = handler;
        _services = services;
        Backlog = backlog;
    }

    public IPEndPoint EndPoint { get; private set; } = new(IPAddress.None, 0);

    public int Backlog { get; }

    public TcpIntegration Integration => _handler.Integration;

    /// <summary>Binds and starts serving. <see cref="IOException"/> when the port is taken.</summary>
    public static async Task<TcpIntegrationListener> StartAsync(TcpIntegration integration, IPAddress address, IServiceProvider services, CancellationToken cancellationToken)
    {
        var loggers = services.GetRequiredService<ILoggerFactory>();
        var client = integration.Options.ClientConfiguration;
        var backlog = BacklogOf(integration.Options);
        var kestrelOptions = new KestrelServerOptions { ApplicationServices = services, AddServerHeader = false };
        var transport = new SocketTransportFactory(Options.Create(new SocketTransportOptions { Backlog = backlog }), loggers);
        var server = new KestrelServer(Options.Create(kestrelOptions), transport, loggers);
        var listener = new TcpIntegrationListener(server, NewHandler(integration, services), services, backlog);
        ListenOptions? bound = null;
        kestrelOptions.Listen(address, client.Port, listen =>
        {
            bound = listen;
            if (services.GetService<Perf.Core.ConnectionGuard>() is { } guard && services.GetService<LimitSettings>() is { } limits)
            {
                listen.UseConnectionGate(guard, guard.CreateQuota("tcp", limits.TcpMaxConnections));
            }

            listen.Run(connection => listener._handler.OnConnectedAsync(connection));
        });
        try
        {
            await server.StartAsync(new NoHttpApplication(), cancellationToken);
        }
        catch
        {
            server.Dispose();
            throw;
        }

        listener.EndPoint = bound!.IPEndPoint!;
        return listener;
    }

    /// <summary>The listen backlog an integration asks for (soBacklogOption; the reference's 128 when unset).</summary>
    public static int BacklogOf(TcpIntegrationOptions options) =>
        options.ClientConfiguration.SoBacklogOption > 0 ? options.ClientConfiguration.SoBacklogOption : 128;

    /// <summary>New connections use <paramref name="integration"/> from now on.</summary>
    public void Swap(TcpIntegration integration) => _handler = NewHandler(integration, _services);

    public async ValueTask DisposeAsync()
    {
        // Kestrel waits for open connections until the token fires, then aborts them: a device that keeps
        // its connection open (as the seed's downlink flow does) must not hold a delete or a shutdown.
        using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        await _server.StopAsync(grace.Token);
        _server.Dispose();
    }

    private static TcpIntegrationHandler NewHandler(TcpIntegration integration, IServiceProvider services) =>
        new(integration, services.GetRequiredService<ITcpUplinkSink>(), services.GetRequiredService<ILogger<TcpIntegrationHandler>>(), services.GetService<Perf.Core.ConnectionGuard>());

    /// <summary>Kestrel starts with an HTTP application; this server's only endpoint is a connection handler, so it is never called.</summary>
    private sealed class NoHttpApplication : IHttpApplication<object>
    {
        public object CreateContext(IFeatureCollection contextFeatures) => throw new NotSupportedException("no HTTP on a TCP integration port");

        public Task ProcessRequestAsync(object context) => Task.CompletedTask;

        public void DisposeContext(object context, Exception? exception)
        {
        }
    }
}
