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
/// Wraps each logger provider so every formatted message and exception text passes through
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
/// </remarks>
public class RedactingLoggerProvider : ILoggerProvider
{
    private readonly bool _ownsInner;

    public RedactingLoggerProvider(ILoggerProvider inner, bool ownsInner)
    {
        Inner = inner;
        _ownsInner = ownsInner;
    }

    private protected ILoggerProvider Inner { get; }

    public ILogger CreateLogger(string categoryName) => new RedactingLogger(Inner.CreateLogger(categoryName));

    public void Dispose()
    {
        if (_ownsInner)
        {
            Inner.Dispose();
        }
    }

    private sealed class RedactingLogger(ILogger inner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!inner.IsEnabled(logLevel))
            {
                return;
            }

            var message = formatter(state, exception);
            var messageRedacted = SecretRedaction.TryRedact(message, out var cleanMessage);
            if (exception is not null && SecretRedaction.TryRedact(exception.ToString(), out var cleanException))
            {
                // The exception's own text carries a secret (e.g. a request target): write it as redacted text.
                inner.Log(logLevel, eventId, cleanMessage + Environment.NewLine + cleanException, null, static (s, _) => s);
            }
            else if (messageRedacted)
            {
                inner.Log(logLevel, eventId, cleanMessage, exception, static (s, _) => s);
            }
            else
            {
                inner.Log(logLevel, eventId, state, exception, formatter);
            }
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
        for (var i = 0; i < services.Count; i++)
        {
            var descriptor = services[i];
            if (descriptor.ServiceType != typeof(ILoggerProvider) || descriptor.IsKeyedService)
            {
                continue;
            }

            if (descriptor.ImplementationInstance is ILoggerProvider instance)
            {
                services[i] = ServiceDescriptor.Singleton<ILoggerProvider>(Wrap(instance, ownsInner: false, scopes));
            }
            else if (descriptor.ImplementationFactory is { } factory)
            {
                services[i] = ServiceDescriptor.Singleton<ILoggerProvider>(sp => Wrap((ILoggerProvider)factory(sp), ownsInner: true, scopes));
            }
            else if (descriptor.ImplementationType is { } type)
            {
                // Resolved by the container (its constructor choice, its disposal).
                services.Add(ServiceDescriptor.Singleton(type, type));
                services[i] = ServiceDescriptor.Singleton<ILoggerProvider>(sp => Wrap((ILoggerProvider)sp.GetRequiredService(type), ownsInner: false, scopes));
            }
        }

        return logging;
    }

    private static RedactingLoggerProvider Wrap(ILoggerProvider inner, bool ownsInner, bool scopes) =>
        scopes ? new ScopedRedactingLoggerProvider(inner, ownsInner) : new RedactingLoggerProvider(inner, ownsInner);
}
