using System.Buffers;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;

namespace Perf.Api.Hosting;

/// <summary>
/// Removes secrets from log text the framework writes: ASP.NET Core logs request paths and query strings
/// ("Request starting ... /api/v1/{token}/telemetry", the static-file and routing matchers at Debug), and the
/// HTTP device API carries the access token in the path, the legacy WebSocket a JWT in <c>?token=</c>, device
/// creation an <c>?accessToken=</c>. Our own log lines never carry secrets; this catches everyone else's.
/// </summary>
public static partial class SecretRedaction
{
    public const string Mask = "***";

    // A cheap pre-check so lines without any of these (nearly all) are passed on untouched.
    private static readonly SearchValues<string> Markers = SearchValues.Create(
        ["api/v1/", "token=", "password=", "secret=", "eyJ", "bearer"], StringComparison.OrdinalIgnoreCase);

    /// <summary>The text with secrets masked, or false (and no allocation) when there is nothing to mask.</summary>
    public static bool TryRedact(string? text, out string redacted)
    {
        redacted = text ?? string.Empty;
        if (string.IsNullOrEmpty(text) || !text.AsSpan().ContainsAny(Markers))
        {
            return false;
        }

        var result = Secrets().Replace(text, Mask);
        if (ReferenceEquals(result, text) || result == text)
        {
            return false;
        }

        redacted = result;
        return true;
    }

    /// <summary>
    /// The device token segment after <c>api/v1/</c>; values of token/accessToken/access_token/password/secret
    /// query parameters; bearer credentials; anything shaped like a JWT (base64url "eyJ" header, two dots).
    /// </summary>
    [GeneratedRegex(
        @"(?<=\bapi/v1/)[^/?#\s""']+|(?<=[?&](?:token|accesstoken|access_token|password|secret)=)[^&#\s""']+|(?<=\bbearer\s+)[^\s""',]+|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
        RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex Secrets();
}

/// <summary>
/// Wraps logger providers so every formatted message and exception text passes through
/// <see cref="SecretRedaction"/> before it is written. Provider-specific level rules
/// (<c>Logging:Console:LogLevel</c>) no longer match the wrapped provider; use the category rules
/// (<c>Logging:LogLevel</c>), as appsettings.json does.
/// </summary>
/// <remarks>
/// This one does not take part in logging scopes (it is not an <see cref="ISupportExternalScope"/>), so when no
/// provider does, the logger factory keeps no scope stack: a scope costs nothing. Kestrel opens one per connection
/// and ASP.NET Core one per request, each an object plus an <see cref="ExecutionContext"/> change that the
/// connection's async state then holds while it is open (issue 12: about 0.2 KB per idle connection). Use
/// <see cref="ScopedRedactingLoggerProvider"/> when scopes are printed.
/// Without scopes, one instance wraps every provider (console, debug, event source), and its loggers open no scope
/// at all: with one wrapper per provider, the factory's logger still made a scope object and an array for the
/// providers' scopes on each <c>BeginScope</c>, which Kestrel's connection then held (issue 12: 80 bytes per idle
/// connection).
/// </remarks>
public class RedactingLoggerProvider : ILoggerProvider
{
    private readonly ILoggerProvider[] _inners;
    private readonly bool[] _owned;

    public RedactingLoggerProvider(ILoggerProvider inner, bool ownsInner)
        : this([inner], [ownsInner])
    {
    }

    /// <summary>Several providers behind one wrapper: each message is formatted and redacted once for all; scopes are not passed on.</summary>
    public RedactingLoggerProvider(ILoggerProvider[] inners, bool[] owned)
    {
        _inners = inners;
        _owned = owned;
    }

    private protected ILoggerProvider Inner => _inners[0];

    public ILogger CreateLogger(string categoryName)
    {
        var loggers = new ILogger[_inners.Length];
        for (int i = 0; i < loggers.Length; i++)
        {
            loggers[i] = _inners[i].CreateLogger(categoryName);
        }

        return new RedactingLogger(loggers);
    }

    public void Dispose()
    {
        for (int i = 0; i < _inners.Length; i++)
        {
            if (_owned[i])
            {
                _inners[i].Dispose();
            }
        }
    }

    /// <summary>The wrapped providers' loggers: scopes go to a single one, and several take none (see the class remarks).</summary>
    private sealed class RedactingLogger(ILogger[] loggers) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => loggers.Length == 1 ? loggers[0].BeginScope(state) : null;

        public bool IsEnabled(LogLevel logLevel)
        {
            foreach (var logger in loggers)
            {
                if (logger.IsEnabled(logLevel))
                {
                    return true;
                }
            }

            return false;
        }

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            // Formatted and redacted once, whatever the number of providers that write it.
            bool redacted = false;
            (string? Text, bool ExceptionInText) clean = default;
            foreach (var logger in loggers)
            {
                if (!logger.IsEnabled(logLevel))
                {
                    continue;
                }

                if (!redacted)
                {
                    clean = Redact(state, exception, formatter);
                    redacted = true;
                }

                if (clean.Text is null)
                {
                    logger.Log(logLevel, eventId, state, exception, formatter);
                }
                else
                {
                    logger.Log(logLevel, eventId, clean.Text, clean.ExceptionInText ? null : exception, static (s, _) => s);
                }
            }
        }

        /// <summary>
        /// The message with secrets masked, or null when it has none. When the exception's own text carries a secret
        /// (e.g. a request target), it is written as redacted text after the message instead of as the exception.
        /// </summary>
        private static (string? Text, bool ExceptionInText) Redact<TState>(TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var message = formatter(state, exception);
            var messageRedacted = SecretRedaction.TryRedact(message, out var cleanMessage);
            if (exception is not null && SecretRedaction.TryRedact(exception.ToString(), out var cleanException))
            {
                return (cleanMessage + Environment.NewLine + cleanException, true);
            }

            return (messageRedacted ? cleanMessage : null, false);
        }
    }

    private protected sealed class RedactingScopeProvider(IExternalScopeProvider inner) : IExternalScopeProvider
    {
        public void ForEachScope<TState>(Action<object?, TState> callback, TState state) =>
            inner.ForEachScope(
                static (scope, s) => s.Callback(SecretRedaction.TryRedact(scope?.ToString(), out var clean) ? clean : scope, s.State),
                (Callback: callback, State: state));

        public IDisposable Push(object? state) => inner.Push(state);
    }
}

/// <summary>
/// A <see cref="RedactingLoggerProvider"/> that also takes part in logging scopes: the wrapped provider gets the
/// scope stack, and each scope's text is redacted as it is written (e.g. ASP.NET Core's RequestPath scope).
/// </summary>
public sealed class ScopedRedactingLoggerProvider(ILoggerProvider inner, bool ownsInner) : RedactingLoggerProvider(inner, ownsInner), ISupportExternalScope
{
    public void SetScopeProvider(IExternalScopeProvider scopeProvider)
    {
        if (Inner is ISupportExternalScope scoped)
        {
            scoped.SetScopeProvider(new RedactingScopeProvider(scopeProvider));
        }
    }
}

public static class SecretRedactionExtensions
{
    /// <summary>
    /// True when the console prints logging scopes (<c>Logging:Console:FormatterOptions:IncludeScopes</c>, or the
    /// older <c>Logging:Console:IncludeScopes</c>); off by default, and then nothing would show them.
    /// </summary>
    public static bool ScopesPrinted(IConfiguration configuration) =>
        configuration.GetValue<bool>("Logging:Console:FormatterOptions:IncludeScopes") ||
        configuration.GetValue<bool>("Logging:Console:IncludeScopes");

    /// <summary>
    /// Wraps every logger provider registered so far in a <see cref="RedactingLoggerProvider"/> (with
    /// <paramref name="scopes"/>, a <see cref="ScopedRedactingLoggerProvider"/>); call it last.
    /// </summary>
    public static ILoggingBuilder RedactSecrets(this ILoggingBuilder logging, bool scopes = true)
    {
        var services = logging.Services;
        var inners = new List<Func<IServiceProvider, (ILoggerProvider Provider, bool Owned)>>();
        for (var i = 0; i < services.Count; i++)
        {
            var descriptor = services[i];
            if (descriptor.ServiceType != typeof(ILoggerProvider) || descriptor.IsKeyedService)
            {
                continue;
            }

            Func<IServiceProvider, (ILoggerProvider, bool)> inner;
            if (descriptor.ImplementationInstance is ILoggerProvider instance)
            {
                inner = _ => (instance, false);
            }
            else if (descriptor.ImplementationFactory is { } factory)
            {
                inner = sp => ((ILoggerProvider)factory(sp), true);
            }
            else if (descriptor.ImplementationType is { } type)
            {
                // Resolved by the container (its constructor choice, its disposal).
                services.Add(ServiceDescriptor.Singleton(type, type));
                inner = sp => ((ILoggerProvider)sp.GetRequiredService(type), false);
            }
            else
            {
                continue;
            }

            if (scopes)
            {
                services[i] = ServiceDescriptor.Singleton<ILoggerProvider>(sp =>
                {
                    var (provider, owned) = inner(sp);
                    return new ScopedRedactingLoggerProvider(provider, owned);
                });
            }
            else
            {
                inners.Add(inner);
                services.RemoveAt(i--);
            }
        }

        if (inners.Count > 0)
        {
            // Without scopes: one wrapper for every provider (see RedactingLoggerProvider).
            services.AddSingleton<ILoggerProvider>(sp =>
            {
                var resolved = inners.Select(inner => inner(sp)).ToArray();
                return new RedactingLoggerProvider(resolved.Select(r => r.Provider).ToArray(), resolved.Select(r => r.Owned).ToArray());
            });
        }

        return logging;
    }
}
