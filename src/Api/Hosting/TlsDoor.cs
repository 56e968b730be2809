using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace Perf.Api.Hosting;

/// <summary>
/// TLS in front of a door: Kestrel's <c>UseHttps</c> on the listener, so the door's handler (MQTT or HTTP) runs over the
/// decrypted stream unchanged. TLS 1.2 and 1.3 only; a handshake not done within the timeout is dropped. Each failed
/// handshake is logged once, with the remote address and the reason, and affects nothing but its own connection.
/// </summary>
internal static class TlsDoor
{
    /// <summary>
    /// Adds TLS to <paramref name="listen"/>; the door's own handler is added after this call. With
    /// <paramref name="clientCertificates"/> (MQTT) the client may present a certificate: any certificate is accepted at the
    /// TLS level (devices use self-signed ones) unless it is outside its validity period, and the door decides at CONNECT
    /// whether it is a device's X.509 credentials.
    /// </summary>
    public static ListenOptions UseTlsDoor(this ListenOptions listen, string door, TlsSettings settings, X509Certificate2 certificate,
        X509Certificate2Collection chain, bool clientCertificates)
    {
        listen.Use(next =>
        {
            var logger = listen.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger("Perf.Host.Tls");
            var throttle = new FailureLogThrottle();
            return connection => WatchHandshakeAsync(connection, next, door, logger, throttle);
        });

        var https = new HttpsConnectionAdapterOptions
        {
            ServerCertificate = certificate,
            ServerCertificateChain = chain,
            SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            HandshakeTimeout = settings.HandshakeTimeout,
            ClientCertificateMode = clientCertificates ? ClientCertificateMode.AllowCertificate : ClientCertificateMode.NoCertificate,
        };
        if (clientCertificates)
        {
            var skipValidity = settings.SkipValidityCheckForClientCert;
            https.ClientCertificateValidation = (client, _, _) => AcceptClientCertificate(client, skipValidity);

            // Not HTTP: offer no ALPN protocol (Kestrel would offer h2 and http/1.1), so a client asking for "mqtt" is not refused.
            https.OnAuthenticate = static (_, options) => options.ApplicationProtocols = null;
        }

        listen.UseHttps(https);
        listen.Use(next => connection =>
        {
            HandshakeAttempt.Current?.Established = true;
            return next(connection);
        });
        return listen;
    }

    /// <summary>
    /// A self-signed or unknown-CA certificate is fine here (it is matched against device credentials at CONNECT, as the
    /// reference does); an expired or not-yet-valid one is refused unless <c>MQTT_SSL_SKIP_VALIDITY_CHECK_FOR_CLIENT_CERT</c>.
    /// </summary>
    private static bool AcceptClientCertificate(X509Certificate2 certificate, bool skipValidity)
    {
        var now = DateTime.Now;
        if (skipValidity || (now >= certificate.NotBefore && now <= certificate.NotAfter))
        {
            return true;
        }

        HandshakeAttempt.Current?.Reason ??= now > certificate.NotAfter
            ? $"client certificate {certificate.Subject} expired on {certificate.NotAfter.ToUniversalTime():u}"
            : $"client certificate {certificate.Subject} is not valid before {certificate.NotBefore.ToUniversalTime():u}";
        return false;
    }

    private static async Task WatchHandshakeAsync(ConnectionContext connection, ConnectionDelegate next, string door, ILogger logger, FailureLogThrottle throttle)
    {
        var attempt = new HandshakeAttempt();
        HandshakeAttempt.Current = attempt;
        await next(connection);
        if (attempt.Established || !throttle.TryEnter(out var suppressed))
        {
            return;
        }

        if (suppressed > 0)
        {
            HostLog.TlsHandshakeFailuresSuppressed(logger, door, suppressed, FailureLogThrottle.LinesPerSecond);
        }

        HostLog.TlsHandshakeFailed(logger, door, connection.RemoteEndPoint?.ToString() ?? connection.ConnectionId,
            attempt.Reason ?? "the handshake did not complete (connection closed)");
    }
}

/// <summary>
/// One log line per failed handshake, but at most <see cref="LinesPerSecond"/> a second per door: a storm of bad
/// handshakes (a scanner, a fleet with a wrong CA reconnecting) is counted, and the count logged with the next line.
/// </summary>
internal sealed class FailureLogThrottle
{
    public const int LinesPerSecond = 10;

    private readonly Lock _lock = new();
    private readonly Func<long> _clockMs;
    private long _windowStart;
    private int _inWindow;
    private int _suppressed;

    public FailureLogThrottle()
        : this(static () => Environment.TickCount64)
    {
    }

    /// <summary>With a millisecond clock of the caller's (tests step it by hand).</summary>
    internal FailureLogThrottle(Func<long> clockMs)
    {
        _clockMs = clockMs;
        _windowStart = long.MinValue / 2;
    }

    /// <summary>True when this failure may be logged; <paramref name="suppressed"/> is how many were not since the last logged one.</summary>
    public bool TryEnter(out int suppressed)
    {
        lock (_lock)
        {
            var now = _clockMs();
            if (now - _windowStart >= 1000)
            {
                _windowStart = now;
                _inWindow = 0;
            }

            if (_inWindow < LinesPerSecond)
            {
                _inWindow++;
                suppressed = _suppressed;
                _suppressed = 0;
                return true;
            }

            _suppressed++;
            suppressed = 0;
            return false;
        }
    }
}

/// <summary>
/// One connection's TLS handshake, visible to everything running in its flow (the certificate callback, Kestrel's
/// handshake, and <see cref="TlsHandshakeFailureCapture"/>), so the failure can be logged with its reason.
/// </summary>
internal sealed class HandshakeAttempt
{
    private static readonly AsyncLocal<HandshakeAttempt?> CurrentAttempt = new();

    public static HandshakeAttempt? Current
    {
        get => CurrentAttempt.Value;
        set => CurrentAttempt.Value = value;
    }

    public bool Established { get; set; }
    public string? Reason { get; set; }
}

/// <summary>
/// Kestrel's TLS middleware swallows a failed handshake, reporting it only as a Debug log entry with the exception. This
/// provider listens to that category alone and hands the reason to the connection's <see cref="HandshakeAttempt"/>, so
/// <see cref="TlsDoor"/> logs one line with the remote address and the cause (e.g. the client's alert "UnknownCA", a
/// plain-text client, or the timeout) without turning on Kestrel's debug logging.
/// </summary>
internal sealed class TlsHandshakeFailureCapture : ILoggerProvider, ILogger
{
    /// <summary>The category of Kestrel's <c>HttpsConnectionMiddleware</c> logger.</summary>
    public const string KestrelHttpsCategory = "Microsoft.AspNetCore.Server.Kestrel.Https";

    public ILogger CreateLogger(string categoryName) =>
        categoryName.StartsWith(KestrelHttpsCategory, StringComparison.Ordinal) ? this : Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

    public void Dispose()
    {
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => HandshakeAttempt.Current is { Established: false };

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (HandshakeAttempt.Current is not { Established: false, Reason: null } attempt)
        {
            return;
        }

        if (eventId.Name == "AuthenticationTimedOut")
        {
            attempt.Reason = "no complete handshake within the timeout (TLS_HANDSHAKE_TIMEOUT_SECONDS)";
        }
        else if (exception is not null)
        {
            attempt.Reason = Describe(exception);
        }
    }

    /// <summary>The exception's message and, when it adds something, its innermost cause (OpenSSL's reason).</summary>
    private static string Describe(Exception exception)
    {
        var inner = exception;
        while (inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }

        if (ReferenceEquals(inner, exception) || inner.Message == exception.Message)
        {
            return exception.Message;
        }

        // "Authentication failed, see inner exception." says nothing by itself: the inner message is the reason.
        return $"{exception.Message.Replace(", see inner exception.", "", StringComparison.Ordinal).TrimEnd('.')}: {inner.Message}";
    }
}
