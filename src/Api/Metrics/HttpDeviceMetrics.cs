using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Perf.Core;

namespace Perf.Api.Metrics;

/// <summary>
/// Instruments of the HTTP device API door (meter <c>Perf.Http</c>): requests by kind and request body bytes.
/// Tag arrays are cached per route, so a request adds no allocation of its own.
/// </summary>
internal static class HttpDeviceMetrics
{
    public const string MeterName = "Perf.Http";

    private static readonly Meter Meter = new(MeterName);

    private static readonly Counter<long> MessagesIn = Meter.CreateCounter<long>(
        "messages.in", description: "HTTP device API requests, by kind (telemetry, attributes, rpc, ...)");

    private static readonly ObservedCounter BytesIn = new(
        Meter, "bytes.in", unit: "By", description: "Request body bytes received by the HTTP device API");

    private static readonly ConcurrentDictionary<string, KeyValuePair<string, object?>[]> Tags = new(StringComparer.Ordinal);

    /// <summary>Endpoint filter for the <c>/api/v1/{token}</c> group.</summary>
    public static ValueTask<object?> Filter(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var pattern = (http.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "other";
        var tags = Tags.GetOrAdd(pattern, static (p, method) => [new("type", Kind(p, method))], http.Request.Method);
        MessagesIn.Add(1, tags);
        if (http.Request.ContentLength is long length)
        {
            BytesIn.Add(length);
        }

        return next(context);
    }

    // "/api/v1/{token}/attributes/updates" -> "attributes_updates"; GET /attributes -> "attributes_request".
    private static string Kind(string pattern, string method)
    {
        var marker = pattern.IndexOf("{token}", StringComparison.Ordinal);
        var tail = marker < 0 ? pattern : pattern[(marker + "{token}".Length)..];
        var parts = tail.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => !p.StartsWith('{')).ToArray();
        var kind = parts.Length == 0 ? "other" : string.Join('_', parts);
        return kind == "attributes" && HttpMethods.IsGet(method) ? "attributes_request" : kind;
    }
}
