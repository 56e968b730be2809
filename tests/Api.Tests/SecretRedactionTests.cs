using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Perf.Api.Hosting;

namespace Perf.Api.Tests;

public sealed class SecretRedactionTests
{
    [Theory]
    [InlineData("Request starting HTTP/1.1 POST http://127.0.0.1:5000/api/v1/A1b2C3d4E5/telemetry - application/json 17",
        "Request starting HTTP/1.1 POST http://127.0.0.1:5000/api/v1/***/telemetry - application/json 17")]
    [InlineData("The request path /api/v1/A1b2C3d4E5 does not match a supported file type", "The request path /api/v1/*** does not match a supported file type")]
    [InlineData("1 candidate(s) found for the request path '/api/v1/A1b2C3d4E5/rpc/7'", "1 candidate(s) found for the request path '/api/v1/***/rpc/7'")]
    [InlineData("GET coap://127.0.0.1/api/v1/A1b2C3d4E5/attributes?sharedKeys=a", "GET coap://127.0.0.1/api/v1/***/attributes?sharedKeys=a")]
    [InlineData("Request starting HTTP/1.1 GET http://h/api/ws/plugins/telemetry?token=eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl - - -",
        "Request starting HTTP/1.1 GET http://h/api/ws/plugins/telemetry?token=*** - - -")]
    [InlineData("POST http://h/api/device?accessToken=MySecretTok&x=1", "POST http://h/api/device?accessToken=***&x=1")]
    [InlineData("Authorization: Bearer abc.def.ghi", "Authorization: Bearer ***")]
    [InlineData("token was eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl here", "token was *** here")]
    public void SecretsInLogText_AreMasked(string text, string expected)
    {
        Assert.True(SecretRedaction.TryRedact(text, out var redacted));
        Assert.Equal(expected, redacted);
    }

    [Theory]
    [InlineData("Door mqtt listening on mqtt://127.0.0.1:1883")]
    [InlineData("Request starting HTTP/1.1 GET http://127.0.0.1:5000/api/device/5d0f/credentials - - -")]
    [InlineData("Executing endpoint 'HTTP: POST /api/auth/login'")]
    [InlineData("")]
    public void TextWithoutSecrets_IsLeftAlone(string text)
    {
        Assert.False(SecretRedaction.TryRedact(text, out var redacted));
        Assert.Same(text, redacted);
    }

    [Fact]
    public void WrappedProvider_WritesRedactedMessagesExceptionsAndScopes()
    {
        var sink = new ListProvider();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(sink).RedactSecrets());
        using var provider = services.BuildServiceProvider();
        var logger = provider.GetRequiredService<ILoggerFactory>().CreateLogger("Microsoft.AspNetCore.Hosting.Diagnostics");
        using (logger.BeginScope("RequestPath:/api/v1/{Token}/telemetry", "ScopeTok123"))
        {
            logger.LogInformation("Request starting POST {Path}", "/api/v1/PathTok456/telemetry");
            logger.LogWarning(new InvalidOperationException("bad target /api/v1/ExcTok789/x"), "failed");
            logger.LogInformation("plain {Value}", 42);
        }

        var all = string.Join('\n', sink.Lines);
        Assert.DoesNotContain("ScopeTok123", all, StringComparison.Ordinal);
        Assert.DoesNotContain("PathTok456", all, StringComparison.Ordinal);
        Assert.DoesNotContain("ExcTok789", all, StringComparison.Ordinal);
        Assert.Contains("Request starting POST /api/v1/***/telemetry", all, StringComparison.Ordinal);
        Assert.Contains("plain 42", all, StringComparison.Ordinal);
        Assert.Contains("RequestPath:/api/v1/***/telemetry", all, StringComparison.Ordinal);
    }

    /// <summary>A provider that records message, exception and scopes as the console would print them.</summary>
    [Fact]
    public void WithoutScopes_MessagesAreStillRedacted_AndNoScopeStackIsKept()
    {
        var sink = new ListProvider();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(sink).RedactSecrets(scopes: false));
        using var provider = services.BuildServiceProvider();
        var logger = provider.GetRequiredService<ILoggerFactory>().CreateLogger("Microsoft.AspNetCore.Server.Kestrel.Connections");
        Assert.IsNotAssignableFrom<ISupportExternalScope>(Assert.Single(provider.GetServices<ILoggerProvider>()));
        using (logger.BeginScope("RequestPath:/api/v1/{Token}/telemetry", "ScopeTok123"))
        {
            logger.LogInformation("Request starting POST {Path}", "/api/v1/PathTok456/telemetry");
        }

        // The factory handed the sink no scope stack: a scope is a no-op, not an object pushed on an async-local.
        Assert.False(sink.HasScopeProvider);
        var all = string.Join('\n', sink.Lines);
        Assert.DoesNotContain("PathTok456", all, StringComparison.Ordinal);
        Assert.DoesNotContain("ScopeTok123", all, StringComparison.Ordinal);
        Assert.Contains("Request starting POST /api/v1/***/telemetry", all, StringComparison.Ordinal);
    }

    /// <summary>
    /// Without scopes, every provider sits behind one wrapper: each still gets every message, redacted, and a scope
    /// (Kestrel opens one per connection) is no object at all, where one wrapper per provider made the factory's logger
    /// allocate a scope and an array for the providers' scopes, kept by the connection while it is open.
    /// </summary>
    [Fact]
    public void WithoutScopes_SeveralProviders_ShareOneWrapper_EachGetsEveryMessage_AndAScopeIsNoObject()
    {
        var first = new ListProvider();
        var second = new ListProvider();
        var services = new ServiceCollection();
        services.AddLogging(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(first).AddProvider(second).RedactSecrets(scopes: false));
        using var provider = services.BuildServiceProvider();
        Assert.Single(provider.GetServices<ILoggerProvider>());
        var logger = provider.GetRequiredService<ILoggerFactory>().CreateLogger("Microsoft.AspNetCore.Server.Kestrel.Connections");
        using (var scope = logger.BeginScope("ConnectionId:{ConnectionId}", "0HN000000001"))
        {
            Assert.Null(scope);
            logger.LogInformation("Request starting POST {Path}", "/api/v1/PathTok456/telemetry");
        }

        foreach (var sink in new[] { first, second })
        {
            Assert.False(sink.HasScopeProvider);
            var line = Assert.Single(sink.Lines);
            Assert.Contains("Request starting POST /api/v1/***/telemetry", line, StringComparison.Ordinal);
        }

        // One formatting (and one redaction) for both providers.
        int formatted = 0;
        logger.Log(LogLevel.Information, default, "/api/v1/Tok/x", null, (s, _) => { formatted++; return "path " + s; });
        Assert.Equal(1, formatted);
        Assert.All(new[] { first, second }, sink => Assert.Contains("path /api/v1/***/x", sink.Lines[^1], StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(null, null, false)]
    [InlineData("true", null, true)]
    [InlineData("false", null, false)]
    [InlineData(null, "true", true)]
    public void ScopesArePrinted_OnlyWhenTheConsoleIsToldTo(string? formatterOption, string? legacyOption, bool expected)
    {
        var values = new Dictionary<string, string?>
        {
            ["Logging:Console:FormatterOptions:IncludeScopes"] = formatterOption,
            ["Logging:Console:IncludeScopes"] = legacyOption,
        };
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(values).Build();
        Assert.Equal(expected, SecretRedactionExtensions.ScopesPrinted(configuration));
    }

    private sealed class ListProvider : ILoggerProvider, ISupportExternalScope
    {
        private IExternalScopeProvider? _scopes;

        public List<string> Lines { get; } = [];

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

        public bool HasScopeProvider => _scopes is not null;

        public void Dispose()
        {
        }

        private sealed class Logger(ListProvider owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => owner._scopes?.Push(state);

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                var scopes = new List<string>();
                owner._scopes?.ForEachScope((scope, list) => list.Add(scope?.ToString() ?? string.Empty), scopes);
                lock (owner.Lines)
                {
                    owner.Lines.Add($"{string.Join(" => ", scopes)} {formatter(state, exception)} {exception}");
                }
            }
        }
    }
}
