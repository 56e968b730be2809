using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Perf.Api.Edge;
using Perf.Api.Metrics;
using Perf.Api.Rest;
using Perf.Api.Tcp;
using Perf.Coap;
using Perf.Core;
using Perf.Kestrel.Mqtt;
using Perf.Kestrel.Tcp;

namespace Perf.Api.Hosting;

/// <summary>
/// The executable host: one Kestrel server carrying the doors, plus the CoAP UDP server.
/// <c>Program.cs</c> and the end-to-end tests both start the host through <see cref="StartAsync"/>.
/// </summary>
public sealed class PerfHost : IAsyncDisposable
{
    private readonly ListenOptions?[] _listeners;
    private readonly TlsCertificates _tls;
    private bool _disposed;

    private PerfHost(WebApplication app, PerfEngine engine, HostSettings settings, ListenOptions?[] listeners, TlsCertificates tls)
    {
        App = app;
        Engine = engine;
        Settings = settings;
        _listeners = listeners;
        _tls = tls;
        Endpoints = app.Services.GetRequiredService<BoundEndpoints>();
    }

    public WebApplication App { get; }
    public PerfEngine Engine { get; }
    public HostSettings Settings { get; }
    public BoundEndpoints Endpoints { get; }
    public IServiceProvider Services => App.Services;

    /// <summary>Opens storage and builds the host. <paramref name="overrides"/> win over appsettings and environment (tests use it).</summary>
    public static Task<PerfHost> CreateAsync(string[] args, IReadOnlyDictionary<string, string?>? overrides = null, CancellationToken cancellationToken = default) =>
        CreateAsync(args, overrides, configureCore: null, cancellationToken);

    /// <summary>As above; <paramref name="configureCore"/> adjusts the core's options after configuration (tests: a failing disk).</summary>
    internal static async Task<PerfHost> CreateAsync(string[] args, IReadOnlyDictionary<string, string?>? overrides, Action<CoreOptions>? configureCore, CancellationToken cancellationToken = default)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = args,
            ContentRootPath = AppContext.BaseDirectory,
        });
        if (overrides is not null)
        {
            builder.Configuration.AddInMemoryCollection(overrides);
        }

        // No token or password in any log line, whoever writes it (ASP.NET Core logs request paths). Logging scopes
        // only when the console prints them: otherwise Kestrel's scope per connection and ASP.NET Core's per
        // request cost an object and an ExecutionContext each for nothing (issue 12).
        var printScopes = SecretRedactionExtensions.ScopesPrinted(builder.Configuration);
        builder.Logging.RedactSecrets(printScopes);
        var settings = HostSettings.From(builder.Configuration);

        // TLS certificates load before storage opens: a wrong path or password stops the start with its reason.
        var tls = TlsCertificates.Load(settings);
        if (settings.MqttTls.Enabled || settings.HttpTls.Enabled)
        {
            builder.Logging.AddProvider(new TlsHandshakeFailureCapture());
            builder.Logging.AddFilter<TlsHandshakeFailureCapture>(TlsHandshakeFailureCapture.KestrelHttpsCategory, LogLevel.Debug);
        }
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = settings.ShutdownGrace);
        builder.Services.AddSingleton(settings);
        if (settings.Diagnostics)
        {
            builder.Services.AddSingleton(new RuntimeDiagnostics());
        }
        builder.Services.AddSingleton<BoundEndpoints>();
        builder.Services.AddHostedService<DataDirSpaceWatch>();

        // The core: storage is opened (and the log replayed) before any door accepts a connection.
        var coreOptions = CoreSettings.From(builder.Configuration, settings.DataDir);
        configureCore?.Invoke(coreOptions);
        using var bootLoggers = LoggerFactory.Create(logging => logging.AddConfiguration(builder.Configuration.GetSection("Logging")).AddSimpleConsole(o => o.SingleLine = true).RedactSecrets(printScopes));
        PerfEngine engine;
        try
        {
            engine = await PerfEngine.OpenAsync(coreOptions, bootLoggers, cancellationToken);
        }
        catch
        {
            tls.Dispose();
            throw;
        }

        try
        {
            return await BuildAsync(builder, settings, tls, engine);
        }
        catch
        {
            // Whatever failed after storage opened (a door's settings, the default accounts): storage is checkpointed
            // and closed as at any stop, and the certificates are released.
            await engine.DisposeAsync();
            tls.Dispose();
            throw;
        }
    }

    /// <summary>The doors, services and endpoints over an opened <paramref name="engine"/>.</summary>
    private static async Task<PerfHost> BuildAsync(WebApplicationBuilder builder, HostSettings settings, TlsCertificates tls, PerfEngine engine)
    {
        builder.Services.AddSingleton(engine);
        builder.Services.AddSingleton(engine.DeviceApi);
        builder.Services.AddSingleton(engine.Sessions);
        builder.Services.AddSingleton(engine.Keys);
        builder.Services.AddRestApi(builder.Configuration, settings.DataDir);

        // Limits shared by every door (issue 13): per-address connection rate and credential blocking, message rates.
        var limits = LimitSettings.From(builder.Configuration);
        builder.Services.AddSingleton(limits);
        builder.Services.AddSingleton(sp => new ConnectionGuard(limits.Guard, sp.GetRequiredService<ILogger<ConnectionGuard>>()));
        builder.Services.AddSingleton(new DeviceRateLimits(limits.TenantMessagesRateLimit, limits.DeviceMessagesRateLimit, limits.GatewayMessagesRateLimit));

        // The doors: each is an AddXxx() here and a UseXxx() on its endpoint below.
        if (settings.MqttEnabled || settings.MqttTls.Enabled)
        {
            builder.Services.AddMqtt(o => builder.Configuration.GetSection("Mqtt").Bind(o));
        }

        builder.Services.AddTcpIntegrations(builder.Configuration, engine);
        if (settings.CoapEnabled)
        {
            builder.Services.AddCoap(o =>
            {
                o.BindAddress = settings.BindAddress;
                o.Port = settings.CoapPort;
            });
        }

        if (settings.EdgesEnabled)
        {
            builder.Services.AddGrpc();
        }

        // Always registered: the REST edge endpoints use the hub even when the gRPC door is off.
        builder.Services.AddEdges(builder.Configuration);
        builder.Services.AddPerfMetrics();

        // Issue 12 (connect rate): a burst of device connects (a fleet reconnecting after a restart) overflows
        // the default accept backlog of 512; dropped SYNs come back after 1 s and 3 s, which is what
        // CONNACK p99 of 2 to 5 s at 1,000 concurrent connects showed. The kernel caps it at somaxconn.
        builder.WebHost.UseSockets(sockets => sockets.Backlog = 4096);
        if (settings.MqttEnabled && settings.MqttLeanTransport)
        {
            // Issue 12 (memory per idle connection): the MQTT endpoint (a LeanEndPoint) on the lean transport;
            // registered after UseSockets, so Kestrel asks it first, and it binds only LeanEndPoints.
            builder.Services.AddSingleton(sp => new LeanSocketTransportFactory(
                new LeanSocketTransportOptions { Backlog = 4096 }, sp.GetRequiredService<ILoggerFactory>()));
            builder.Services.AddSingleton<Microsoft.AspNetCore.Connections.IConnectionListenerFactory>(sp => sp.GetRequiredService<LeanSocketTransportFactory>());
        }

        var listeners = new ListenOptions?[6];
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            var guard = kestrel.ApplicationServices.GetRequiredService<ConnectionGuard>();
            kestrel.Listen(settings.BindAddress, settings.HttpPort, http =>
            {
                http.UseConnectionGate(guard, guard.CreateQuota("http", limits.HttpMaxConnections));
                // HTTP/2 without TLS needs prior knowledge, which browsers and curl do not use by default;
                // HTTP/2 is negotiated (ALPN) once TLS is configured.
                http.Protocols = HttpProtocols.Http1;
                listeners[0] = http;
            });
            if (settings.MqttEnabled)
            {
                // Issue 12: the plain MQTT port on the lean transport (MQTT_TRANSPORT, default lean).
                var endPoint = settings.MqttLeanTransport ? new LeanEndPoint(settings.BindAddress, settings.MqttPort) : new IPEndPoint(settings.BindAddress, settings.MqttPort);
                kestrel.Listen(endPoint, mqtt => listeners[1] = mqtt.UseConnectionGate(guard, guard.CreateQuota("mqtt", limits.MqttMaxConnections)).UseMqtt());
            }

            if (settings.MqttTls.Enabled)
            {
                // The same MQTT handler over the decrypted stream; a client certificate is read at CONNECT.
                kestrel.Listen(settings.MqttTls.BindAddress, settings.MqttTls.Port, mqtts =>
                    listeners[4] = mqtts.UseConnectionGate(guard, guard.CreateQuota("mqtt-tls", limits.MqttMaxConnections)).UseTlsDoor("mqtt-tls", settings.MqttTls, tls.Mqtt!, tls.MqttChain!, clientCertificates: true).UseMqtt());
            }

            if (settings.HttpTls.Enabled)
            {
                kestrel.Listen(settings.BindAddress, settings.HttpTls.Port, https =>
                {
                    // HTTP/2 is offered through ALPN next to HTTP/1.1 (set before UseHttps, which reads it).
                    https.Protocols = HttpProtocols.Http1AndHttp2;
                    // The gate runs ahead of the handshake: a refused connection costs no TLS work.
                    https.UseConnectionGate(guard, guard.CreateQuota("https", limits.HttpMaxConnections));
                    https.UseTlsDoor("https", settings.HttpTls, tls.Http!, tls.HttpChain!, clientCertificates: false);
                    listeners[5] = https;
                });
            }

            if (settings.TcpIntegrationEnabled)
            {
                kestrel.Listen(settings.BindAddress, settings.TcpIntegrationPort, tcp => listeners[2] = tcp.UseConnectionGate(guard, guard.CreateQuota("tcp", limits.TcpMaxConnections)).UseTcpIntegration());
            }

            if (settings.EdgesEnabled)
            {
                // The reference's edge keep-alive: ping after 10 s idle, drop after 5 s without answer (only HTTP/2 uses these).
                kestrel.Limits.Http2.KeepAlivePingDelay = TimeSpan.FromSeconds(10);
                kestrel.Limits.Http2.KeepAlivePingTimeout = TimeSpan.FromSeconds(5);
                kestrel.Listen(settings.BindAddress, settings.EdgesRpcPort, edge =>
                {
                    edge.Protocols = HttpProtocols.Http2;
                    edge.UseConnectionGate(guard, guard.CreateQuota("edges", limits.EdgesMaxConnections));
                    listeners[3] = edge;
                });
            }
        });

        var app = builder.Build();
        if (settings.EdgesEnabled)
        {
            // The edge listener is made when Kestrel reads its options, at start: read at request time.
            app.UseEdgeDoorFilter(() => listeners[3]?.IPEndPoint?.Port);
        }

        // WebSockets only where they are served: the middleware sets a handshake feature object on every request it
        // sees (64 B per REST call otherwise).
        app.UseWhen(static context => context.Request.Path.StartsWithSegments("/api/ws", StringComparison.OrdinalIgnoreCase), static ws => ws.UseWebSockets());

        // The web console (wwwroot): static files ahead of the REST mapping.
        app.UseDefaultFiles();
        app.UseStaticFiles();
        app.MapHealthEndpoints();
        await app.MapPerfMetricsAsync();
        app.MapRestApi();
        DeviceHttp.DeviceHttpEndpoints.MapDeviceHttpApi(app);
        if (settings.EdgesEnabled)
        {
            app.MapEdgeRpc();
        }
        await DefaultAccounts.EnsureAsync(engine, builder.Configuration, app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Perf.Host"));
        return new PerfHost(app, engine, settings, listeners, tls);
    }

    /// <summary>Starts every door and records the bound addresses.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        var logger = App.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Perf.Host");
        HostLog.DataDir(logger, Path.GetFullPath(Settings.DataDir));
        try
        {
            await App.StartAsync(cancellationToken);
        }
        catch (IOException e) when (Settings.NameTheDoor(e.Message) is var named && !ReferenceEquals(named, e.Message))
        {
            throw new IOException(named, e);
        }

        Endpoints.Http = Report(logger, "http", "http", _listeners[0]);
        Endpoints.Mqtt = Report(logger, "mqtt", "mqtt", _listeners[1], Settings.MqttEnabled);
        Endpoints.TcpIntegration = Report(logger, "tcp-integration", "tcp", _listeners[2], Settings.TcpIntegrationEnabled);
        Endpoints.Edges = Report(logger, "edges", "grpc", _listeners[3], Settings.EdgesEnabled);
        Endpoints.MqttTls = Report(logger, "mqtt-tls", "mqtts", _listeners[4], Settings.MqttTls.Enabled);
        Endpoints.Https = Report(logger, "https", "https", _listeners[5], Settings.HttpTls.Enabled);
        _tls.Log(logger);
        if (Settings.CoapEnabled)
        {
            Endpoints.Coap = App.Services.GetRequiredService<CoapServer>().LocalEndPoint;
            HostLog.DoorBound(logger, "coap", "coap", Endpoints.Coap!.ToString());
        }
        else
        {
            HostLog.DoorDisabled(logger, "coap");
        }

        Endpoints.AllBound = true;
    }

    /// <summary>
    /// The executable's whole life (<c>Program.cs</c>): builds and starts the host, runs until SIGTERM or Ctrl-C, then
    /// stops gracefully within the configured grace period. Returns the process's exit code: 0 after a graceful stop;
    /// 1 when the host could not be built or started (a taken port, an unusable data directory, a bad certificate). The
    /// cause is then one line, in the log (or on standard error when the failure came before logging existed), and
    /// storage opened before the failure is closed as at any stop: no unhandled exception, no abort.
    /// </summary>
    public static async Task<int> RunProcessAsync(string[] args)
    {
        PerfHost host;
        try
        {
            host = await CreateAsync(args);
        }
        catch (Exception e)
        {
            await Console.Error.WriteLineAsync($"Start-up failed: {e.GetType().Name}: {Sentence(e.Message)} Exiting with code 1.");
            return 1;
        }

        await using (host)
        {
            try
            {
                await host.StartAsync();
            }
            catch (Exception e)
            {
                HostLog.StartFailed(host.App.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Perf.Host"), Sentence(e.Message));
                return 1;
            }

            await host.App.WaitForShutdownAsync();
        }

        return 0;
    }

    /// <summary><paramref name="message"/> ending with a full stop, so the exit line after it reads as a second sentence.</summary>
    private static string Sentence(string message) => message.EndsWith('.') ? message : message + ".";

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        await App.StopAsync();
        await App.DisposeAsync();
        await Engine.DisposeAsync();
        _tls.Dispose();
    }

    private static IPEndPoint? Report(ILogger logger, string door, string scheme, ListenOptions? listener, bool enabled = true)
    {
        if (!enabled || listener is null)
        {
            HostLog.DoorDisabled(logger, door);
            return null;
        }

        var endPoint = listener.IPEndPoint!;
        HostLog.DoorBound(logger, door, scheme, endPoint.ToString());
        return endPoint;
    }
}

/// <summary>The server certificates of the TLS doors that are on (null for a door that is off).</summary>
internal sealed class TlsCertificates : IDisposable
{
    public X509Certificate2? Mqtt { get; private init; }
    public X509Certificate2Collection? MqttChain { get; private init; }
    public X509Certificate2? Http { get; private init; }
    public X509Certificate2Collection? HttpChain { get; private init; }

    public static TlsCertificates Load(HostSettings settings)
    {
        X509Certificate2Collection? mqttChain = null, httpChain = null;
        return new TlsCertificates
        {
            Mqtt = settings.MqttTls.Enabled ? settings.MqttTls.LoadCertificate(out mqttChain) : null,
            MqttChain = mqttChain,
            Http = settings.HttpTls.Enabled ? settings.HttpTls.LoadCertificate(out httpChain) : null,
            HttpChain = httpChain,
        };
    }

    public void Log(ILogger logger)
    {
        Log(logger, "mqtt-tls", Mqtt, MqttChain);
        Log(logger, "https", Http, HttpChain);
    }

    private static void Log(ILogger logger, string door, X509Certificate2? certificate, X509Certificate2Collection? chain)
    {
        if (certificate is null)
        {
            return;
        }

        HostLog.TlsCertificate(logger, door, certificate.Subject, certificate.Thumbprint, certificate.NotBefore.ToUniversalTime(),
            certificate.NotAfter.ToUniversalTime(), chain?.Count ?? 0);
        var now = DateTime.Now;
        if (now < certificate.NotBefore || now > certificate.NotAfter)
        {
            HostLog.TlsCertificateNotValidNow(logger, door, certificate.Subject, certificate.NotBefore.ToUniversalTime(), certificate.NotAfter.ToUniversalTime());
        }
    }

    public void Dispose()
    {
        Mqtt?.Dispose();
        Http?.Dispose();
    }
}
