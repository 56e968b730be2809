using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Http.Features;
using Perf.Api.Rest;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Api.DeviceHttp;

/// <summary>
/// The HTTP device API under <c>/api/v1/{token}</c>: the same device calls as MQTT and CoAP over plain
/// HTTP. Bodies go to the core as the <see cref="ReadOnlySequence{T}"/> Kestrel buffered (no copy);
/// long polls register an <see cref="HttpDeviceSession"/> for their duration.
/// </summary>
public static class DeviceHttpEndpoints
{
    /// <summary>Limit on <c>/rpc</c> bodies (the reference's 64 KiB).</summary>
    public const long RpcBodyLimit = 64 * 1024;

    /// <summary>Limit on every other body (the reference's 50 MiB).</summary>
    public const long BodyLimit = 50L * 1024 * 1024;

    private const string Door = "http";

    private const int DefaultTimeoutMs = 60_000, MaxTimeoutMs = 300_000;

    public static WebApplication MapDeviceHttpApi(this WebApplication app)
    {
        var sessions = new HttpDeviceSessions(app.Services.GetRequiredService<ISessionTable>());
        var api = app.MapGroup("/api/v1/{token}");
        api.AddEndpointFilter(Metrics.HttpDeviceMetrics.Filter);
        if (app.Services.GetService<ConnectionGuard>() is { } guard)
        {
            api.AddEndpointFilter((context, next) => GuardAsync(guard, context, next));
        }

        api.MapPost("/telemetry", (string token, HttpContext context, IDeviceApi device, DeviceRateLimits rates) =>
            UplinkAsync(token, context, device, rates, BodyLimit, static (d, dev, body) => d.PostTelemetryAsync(dev, body)));
        api.MapPost("/attributes", (string token, HttpContext context, IDeviceApi device, DeviceRateLimits rates) =>
            UplinkAsync(token, context, device, rates, BodyLimit, static (d, dev, body) => d.PostAttributesAsync(dev, body)));
        api.MapPost("/claim", (string token, HttpContext context, IDeviceApi device, DeviceRateLimits rates) =>
            UplinkAsync(token, context, device, rates, BodyLimit, static (d, dev, body) => d.ClaimAsync(dev, body)));
        api.MapPost("/rpc/{id:int}", (string token, int id, HttpContext context, IDeviceApi device, DeviceRateLimits rates) =>
            UplinkAsync(token, context, device, rates, RpcBodyLimit, (d, dev, body) => d.RpcReplyAsync(dev, id, body)));
        api.MapPost("/rpc", ClientRpcAsync);
        api.MapGet("/attributes", GetAttributesAsync);
        api.MapGet("/attributes/updates", (string token, int? timeout, HttpContext context, IDeviceApi device) =>
            LongPollAsync(token, timeout, rpc: false, context, device, sessions));
        api.MapGet("/rpc", (string token, int? timeout, HttpContext context, IDeviceApi device) =>
            LongPollAsync(token, timeout, rpc: true, context, device, sessions));
        api.MapGet("/firmware", FirmwareAsync);
        return app;
    }

    /// <summary>
    /// Wrong-credential blocking per source address: a blocked address gets 429 without its token being
    /// looked at; every 401 (unknown token) counts as a failure of that address.
    /// </summary>
    private static async ValueTask<object?> GuardAsync(ConnectionGuard guard, EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var remote = context.HttpContext.Connection.RemoteIpAddress;
        if (guard.IsBlocked(Door, remote))
        {
            return ApiError.Of(429, "Too many wrong access tokens from this address; try again later", ErrorCode.TooManyRequests);
        }

        var result = await next(context);
        if (result is IStatusCodeHttpResult { StatusCode: StatusCodes.Status401Unauthorized })
        {
            guard.AuthFailed(Door, remote, "unknown access token");
        }

        return result;
    }

    /// <summary>The per-device and per-tenant message rates shared with MQTT and CoAP: one token per uplink request.</summary>
    private static IResult? RateLimited(DeviceRateLimits rates, Device device) =>
        rates.TryAcquire(device) is { } exceeded ? ApiError.Of(429, "Rate limit " + exceeded + " exceeded", ErrorCode.TooManyRequests) : null;

    private static async Task<IResult> UplinkAsync(string token, HttpContext context, IDeviceApi api, DeviceRateLimits rates, long limit,
        Func<IDeviceApi, Device, ReadOnlySequence<byte>, ValueTask<UplinkResult>> call)
    {
        if (api.Authenticate(token) is not { } device)
        {
            return BadToken();
        }

        if (RateLimited(rates, device) is { } refused)
        {
            return refused;
        }

        var reader = context.Request.BodyReader;
        var (body, error) = await ReadBodyAsync(context, reader, limit);
        if (error is not null)
        {
            return error;
        }

        ValueTask<UplinkResult> pending;
        try
        {
            // The core parses before its first await, so Kestrel's buffer is released right after the call.
            pending = call(api, device, body);
        }
        finally
        {
            reader.AdvanceTo(body.End);
        }

        return ToResult(await pending);
    }

    /// <summary>Buffers the whole body in the request pipe (nothing consumed), refusing it past <paramref name="limit"/>.</summary>
    private static async Task<(ReadOnlySequence<byte> Body, IResult? Error)> ReadBodyAsync(HttpContext context, PipeReader reader, long limit)
    {
        if (context.Request.ContentLength > limit)
        {
            return (default, ApiError.TooLarge($"Request body exceeds {limit} bytes"));
        }

        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
        {
            size.MaxRequestBodySize = limit;
        }

        try
        {
            while (true)
            {
                var read = await reader.ReadAsync(context.RequestAborted);
                if (read.Buffer.Length > limit)
                {
                    reader.AdvanceTo(read.Buffer.End);
                    return (default, ApiError.TooLarge($"Request body exceeds {limit} bytes"));
                }

                if (read.IsCompleted)
                {
                    return (read.Buffer, null);
                }

                reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
            }
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (default, ApiError.TooLarge($"Request body exceeds {limit} bytes"));
        }
    }

    private static IResult ToResult(UplinkResult result) => result.Status switch
    {
        UplinkStatus.Ok => Results.Ok(),
        UplinkStatus.Unauthorized => BadToken(),
        // The reference answers 500 for bad JSON; a client error is a 400.
        UplinkStatus.BadPayload => ApiError.BadRequest(result.Reason ?? "Invalid JSON"),
        UplinkStatus.TooLarge => ApiError.TooLarge(result.Reason ?? "Payload too large"),
        UplinkStatus.RateLimited => ApiError.Of(429, result.Reason ?? "Rate limit exceeded", ErrorCode.TooManyRequests),
        UplinkStatus.NotFound => ApiError.NotFound(result.Reason ?? "Not found"),
        UplinkStatus.Timeout => ApiError.Of(408, result.Reason ?? "Timeout", ErrorCode.General),
        _ => ApiError.Of(500, result.Reason ?? "Internal error", ErrorCode.General),
    };

    private static IResult BadToken() => ApiError.Unauthorized("Invalid device access token");

    private static async Task<IResult> ClientRpcAsync(string token, HttpContext context, IDeviceApi api, DeviceRateLimits rates)
    {
        if (api.Authenticate(token) is not { } device)
        {
            return BadToken();
        }

        if (RateLimited(rates, device) is { } refused)
        {
            return refused;
        }

        var reader = context.Request.BodyReader;
        var (body, error) = await ReadBodyAsync(context, reader, RpcBodyLimit);
        if (error is not null)
        {
            return error;
        }

        ValueTask<ClientRpcResult> pending;
        try
        {
            pending = api.ClientRpcAsync(device, body, context.RequestAborted);
        }
        finally
        {
            reader.AdvanceTo(body.End);
        }

        var result = await pending;
        return result.Result.IsOk
            ? Results.Text(result.ResponseJson ?? "{}", "application/json")
            : ToResult(result.Result);
    }

    private static async Task<IResult> GetAttributesAsync(string token, string? clientKeys, string? sharedKeys, IDeviceApi api, DeviceRateLimits rates)
    {
        if (api.Authenticate(token) is not { } device)
        {
            return BadToken();
        }

        if (RateLimited(rates, device) is { } refused)
        {
            return refused;
        }

        var reply = await api.RequestAttributesAsync(device, KvJson.Keys(clientKeys), KvJson.Keys(sharedKeys));
        return Results.Bytes(DeviceJson.AttributesReply(reply), "application/json");
    }

    private static async Task<IResult> LongPollAsync(string token, int? timeout, bool rpc, HttpContext context, IDeviceApi api, HttpDeviceSessions sessions)
    {
        if (api.Authenticate(token) is not { } device)
        {
            return BadToken();
        }

        var wait = TimeSpan.FromMilliseconds(timeout is > 0 ? Math.Min(timeout.Value, MaxTimeoutMs) : DefaultTimeoutMs);
        var connection = "http:" + context.Connection.RemoteIpAddress + ":" + context.Connection.RemotePort + "/" + context.TraceIdentifier;
        try
        {
            var pushed = await sessions.WaitAsync(device.Id, connection, rpc, wait, context.RequestAborted);
            return pushed is null
                ? ApiError.Of(408, rpc ? "No RPC request within the timeout" : "No attribute update within the timeout", ErrorCode.General)
                : Results.Bytes(pushed, "application/json");
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return Results.Empty; // the client went away
        }
    }

    /// <summary>
    /// <c>?title=&amp;version=&amp;size=&amp;chunk=</c>: one chunk of <c>size</c> bytes; without <c>size</c> the whole package.
    /// </summary>
    private static async Task<IResult> FirmwareAsync(string token, string? title, string? version, int? size, int? chunk, HttpContext context, IDeviceApi api)
    {
        if (api.Authenticate(token) is not { } device)
        {
            return BadToken();
        }

        if (size is > 0)
        {
            var one = await api.GetFirmwareChunkAsync(device, title, version, size.Value, chunk ?? 0);
            return one.Result.IsOk ? Results.Bytes(one.Data, "application/octet-stream") : ToResult(one.Result);
        }

        const int step = 64 * 1024;
        var first = await api.GetFirmwareChunkAsync(device, title, version, step, 0);
        if (!first.Result.IsOk)
        {
            return ToResult(first.Result);
        }

        return Results.Stream(async output =>
        {
            var data = first.Data;
            for (var index = 1; !data.IsEmpty; index++)
            {
                await output.WriteAsync(data, context.RequestAborted);
                if (data.Length < step)
                {
                    break;
                }

                data = (await api.GetFirmwareChunkAsync(device, title, version, step, index)).Data;
            }
        }, "application/octet-stream");
    }
}
