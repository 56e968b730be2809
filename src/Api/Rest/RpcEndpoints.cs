using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>
/// Server-side RPC over REST: v1 <c>/api/plugins/rpc/{oneway|twoway}/{deviceId}</c> (408 on timeout or
/// offline, 409 on too many pending) and v2 <c>/api/rpc/{oneway|twoway}/{deviceId}</c> (504 for both,
/// persistent requests answered at once with <c>{"rpcId"}</c>), plus the persistent RPC API.
/// </summary>
/// <remarks>
/// Deviation from the reference, documented: a deleted persistent RPC is kept (status DELETED, readable
/// by id) until the TTL clean-up instead of being removed at once; lists never contain DELETED ones.
/// </remarks>
internal static class RpcEndpoints
{
    /// <summary>Largest accepted RPC request body (the reference's limit on RPC bodies).</summary>
    public const int MaxBodyBytes = 64 * 1024;

    public const int DefaultTimeoutMs = 10_000;
    public const int MinTimeoutMs = 5_000;

    public static void MapRpcEndpoints(this RouteGroupBuilder api)
    {
        api.MapPost("/plugins/rpc/{callType}/{deviceId:guid}", (string callType, Guid deviceId, HttpContext context, PerfEngine engine) =>
            HandleAsync(callType, deviceId, context, engine, v2: false))
            .Roles(Authority.TenantAdmin, Authority.CustomerUser);

        api.MapPost("/rpc/{callType}/{deviceId:guid}", (string callType, Guid deviceId, HttpContext context, PerfEngine engine) =>
            HandleAsync(callType, deviceId, context, engine, v2: true))
            .Roles(Authority.TenantAdmin, Authority.CustomerUser);

        api.MapGet("/rpc/persistent/{rpcId:guid}", (Guid rpcId, HttpContext context, PerfEngine engine) =>
            VisibleRpc(engine, context, rpcId) is { } rpc ? Results.Json(RpcJson(rpc)) : ApiError.NotFound())
            .Roles(Authority.TenantAdmin, Authority.CustomerUser);

        api.MapDelete("/rpc/persistent/{rpcId:guid}", async (Guid rpcId, HttpContext context, PerfEngine engine) =>
        {
            if (VisibleRpc(engine, context, rpcId) is not { Status: not PersistentRpcStatus.Deleted })
            {
                return ApiError.NotFound();
            }

            return await engine.Rpc.DeletePersistentAsync(rpcId) is null ? ApiError.NotFound() : Results.Ok();
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/rpc/persistent/device/{deviceId:guid}", (Guid deviceId, HttpContext context, PerfEngine engine, int? pageSize, int? page,
            string? rpcStatus, string? textSearch, string? sortProperty, string? sortOrder) =>
        {
            if (DeviceEndpoints.Visible(engine, context, deviceId) is null)
            {
                return ApiError.NotFound();
            }

            if (pageSize is null or <= 0)
            {
                return ApiError.BadRequest("'pageSize' is required and must be positive");
            }

            PersistentRpcStatus? status = null;
            if (!string.IsNullOrEmpty(rpcStatus))
            {
                if (!TryParseStatus(rpcStatus, out var parsed))
                {
                    return ApiError.BadRequest($"Unknown rpcStatus '{rpcStatus}'");
                }

                if (parsed == PersistentRpcStatus.Deleted)
                {
                    return ApiError.BadRequest("RpcStatus: DELETED");
                }

                status = parsed;
            }

            IEnumerable<PersistentRpc> rpcs = engine.Rpc.ListPersistent(deviceId).Where(r => r.Status != PersistentRpcStatus.Deleted);
            if (status is { } wanted)
            {
                rpcs = rpcs.Where(r => r.Status == wanted);
            }

            if (!string.IsNullOrEmpty(textSearch))
            {
                rpcs = rpcs.Where(r => r.Method.Contains(textSearch, StringComparison.OrdinalIgnoreCase) ||
                    r.ParamsJson.Contains(textSearch, StringComparison.OrdinalIgnoreCase) ||
                    (r.ResponseJson?.Contains(textSearch, StringComparison.OrdinalIgnoreCase) ?? false));
            }

            var descending = string.Equals(sortOrder, "DESC", StringComparison.OrdinalIgnoreCase);
            Func<PersistentRpc, object> key = sortProperty switch
            {
                null or "" or "createdTime" => r => r.CreatedTime,
                "expirationTime" => r => r.ExpirationTime,
                "request" => r => r.Method + r.ParamsJson,
                "response" => r => r.ResponseJson ?? string.Empty,
                "status" => r => r.Status.ToString(),
                _ => null!,
            };
            if (key is null)
            {
                return ApiError.BadRequest($"Unsupported sortProperty '{sortProperty}': use createdTime, expirationTime, request, response or status");
            }

            // Request id breaks ties so pages are stable.
            var ordered = descending
                ? rpcs.OrderByDescending(key).ThenByDescending(r => r.RequestId)
                : rpcs.OrderBy(key).ThenBy(r => r.RequestId);
            var result = EntityJson.PageOf(ordered.ToArray(), pageSize.Value, page ?? 0);
            return Results.Json(EntityJson.Page(result, r => RpcJson(r)));
        }).Roles(Authority.TenantAdmin, Authority.CustomerUser);
    }

    private static async Task<IResult> HandleAsync(string callType, Guid deviceId, HttpContext context, PerfEngine engine, bool v2)
    {
        bool oneWay;
        switch (callType)
        {
            case "oneway":
                oneWay = true;
                break;
            case "twoway":
                oneWay = false;
                break;
            default:
                return ApiError.NotFound($"Unknown RPC call type '{callType}': use oneway or twoway");
        }

        if (DeviceEndpoints.Visible(engine, context, deviceId) is not { } device)
        {
            return ApiError.NotFound("Device with requested id wasn't found!");
        }

        // Limits before buffering: a declared length is checked first, a chunked body is cut at the limit.
        if (context.Request.ContentLength > MaxBodyBytes)
        {
            return ApiError.TooLarge($"RPC request body exceeds {MaxBodyBytes} bytes");
        }

        // RestBody sets the server's limit to MaxBodyBytes before reading, so a chunked body is cut there too.
        var (document, error) = await RestBody.ReadObjectDocumentAsync(context.Request, MaxBodyBytes);
        if (error is not null)
        {
            return error;
        }

        RpcRequestBody? request;
        using (document)
        {
            var body = document!.RootElement;
            request = Parse(body, v2);
            if (request is null)
            {
                return ParseError(body);
            }
        }

        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var expirationTime = request.ExpirationTime ?? now + request.TimeoutMs;
        if (request.Persistent)
        {
            var stored = await engine.Rpc.SubmitPersistentAsync(device, request.Method, request.ParamsJson, oneWay, expirationTime, request.Retries,
                request.AdditionalInfoJson);
            return stored is null ? ApiError.NotFound("Device with requested id wasn't found!") : Results.Json(new JsonObject { ["rpcId"] = stored.Id.ToString() });
        }

        var timeoutMs = (int)Math.Clamp(expirationTime - now, 0, int.MaxValue);
        var outcome = await engine.Rpc.SendAsync(device.Id, request.Method, request.ParamsJson, oneWay, timeoutMs, context.RequestAborted);
        return outcome.Status switch
        {
            RpcStatus.Success when oneWay => Results.Ok(),
            RpcStatus.Success when string.IsNullOrEmpty(outcome.ResponseJson) => Results.Ok(),
            RpcStatus.Success when !RestBody.IsJson(outcome.ResponseJson) => // the reference answers 406
                ApiError.Of(406, "The device's reply is not JSON", ErrorCode.General),
            RpcStatus.Success => Results.Text(outcome.ResponseJson, "application/json"),
            RpcStatus.NotFound => ApiError.NotFound("Device with requested id wasn't found!"),
            RpcStatus.TooManyRequests when !v2 => ApiError.Of(409, "Too many pending RPC requests for the device", ErrorCode.TooManyRequests),
            RpcStatus.TooManyRequests => ApiError.Of(504, "Too many pending RPC requests for the device", ErrorCode.TooManyRequests),
            RpcStatus.DeviceOffline => ApiError.Of(v2 ? 504 : 408, "Device is offline: no active connection took the request in time", ErrorCode.General),
            RpcStatus.NoActiveConnection => ApiError.Of(409, "The device has no active connection (its edge answered NO_ACTIVE_CONNECTION)", ErrorCode.General),
            _ => ApiError.Of(v2 ? 504 : 408, "Device did not respond in time", ErrorCode.General),
        };
    }

    private sealed record RpcRequestBody(string Method, string ParamsJson, long TimeoutMs, long? ExpirationTime, bool Persistent, int? Retries, string? AdditionalInfoJson);

    /// <summary>The request when valid; null sends the caller to <see cref="ParseError"/> for the reason.</summary>
    private static RpcRequestBody? Parse(JsonElement body, bool v2)
    {
        if (RestBody.String(body, "method") is not { Length: > 0 } method || !body.TryGetProperty("params", out var parameters))
        {
            return null;
        }

        // A timeout below the minimum is raised to it, as the reference does (Math.max(minTimeout, timeout)).
        if (!TryLong(body, "timeout", DefaultTimeoutMs, out var timeout))
        {
            return null;
        }

        timeout = Math.Max(timeout, MinTimeoutMs);

        long? expirationTime = null;
        if (Present(body, "expirationTime"))
        {
            if (!TryLong(body, "expirationTime", 0, out var exp) || exp <= 0)
            {
                return null;
            }

            expirationTime = exp;
        }

        int? retries = null;
        if (Present(body, "retries"))
        {
            if (!TryLong(body, "retries", 0, out var r) || r is < 0 or > int.MaxValue)
            {
                return null;
            }

            retries = (int)r;
        }

        // Persistent RPC is a v2 feature; v1 ignores the flag as the reference's community edition does.
        var persistent = v2 && body.TryGetProperty("persistent", out var p) && p.ValueKind == JsonValueKind.True;
        var info = body.TryGetProperty("additionalInfo", out var additional) && additional.ValueKind != JsonValueKind.Null ? Minified(additional) : null;
        return new RpcRequestBody(method, Minified(parameters), timeout, expirationTime, persistent, retries, info);
    }

    private static IResult ParseError(JsonElement body)
    {
        if (RestBody.String(body, "method") is not { Length: > 0 })
        {
            return ApiError.BadRequest("'method' is required and must be a non-empty string");
        }

        if (!body.TryGetProperty("params", out _))
        {
            return ApiError.BadRequest("'params' is required (use {} when the method takes none)");
        }

        if (!TryLong(body, "timeout", DefaultTimeoutMs, out _))
        {
            return ApiError.BadRequest("'timeout' must be a number of milliseconds");
        }

        if (Present(body, "retries") && (!TryLong(body, "retries", 0, out var r) || r < 0))
        {
            return ApiError.BadRequest("'retries' must be a non-negative integer");
        }

        return ApiError.BadRequest("'expirationTime' must be a positive epoch time in milliseconds");
    }

    private static bool Present(JsonElement body, string name) =>
        body.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null;

    /// <summary>A member as a number: absent or null gives <paramref name="fallback"/>; a number, or a string holding an integer.</summary>
    private static bool TryLong(JsonElement body, string name, long fallback, out long value)
    {
        value = fallback;
        if (!body.TryGetProperty(name, out var member))
        {
            return true;
        }

        return member.ValueKind == JsonValueKind.Null || Perf.Core.Telemetry.JavaNumbers.TryReadLong(member, out value);
    }

    /// <summary>A value as compact JSON text, as <see cref="JsonNode.ToJsonString"/> writes it (JSON null as <c>null</c>).</summary>
    private static string Minified(JsonElement value)
    {
        var buffer = t_minified ??= new ArrayBufferWriter<byte>(256);
        buffer.ResetWrittenCount();
        var writer = t_minifiedWriter ??= new Utf8JsonWriter(buffer);
        writer.Reset(buffer);
        value.WriteTo(writer);
        writer.Flush();
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    [ThreadStatic] private static ArrayBufferWriter<byte>? t_minified;
    [ThreadStatic] private static Utf8JsonWriter? t_minifiedWriter;

    private static bool TryParseStatus(string text, out PersistentRpcStatus status) =>
        Enum.TryParse(text, ignoreCase: true, out status) && Enum.IsDefined(status) && !int.TryParse(text, out _);

    private static PersistentRpc? VisibleRpc(PerfEngine engine, HttpContext context, Guid rpcId) =>
        engine.Rpc.GetPersistent(rpcId) is { } rpc && DeviceEndpoints.Visible(engine, context, rpc.DeviceId) is not null ? rpc : null;

    /// <summary>The reference's Rpc entity: the request as its ToDeviceRpcRequest (params as JSON text), the response as JSON.</summary>
    public static JsonObject RpcJson(PersistentRpc rpc) => new()
    {
        ["id"] = EntityJson.Id("RPC", rpc.Id),
        ["createdTime"] = rpc.CreatedTime,
        ["tenantId"] = EntityJson.Id("TENANT", rpc.TenantId),
        ["deviceId"] = EntityJson.Id("DEVICE", rpc.DeviceId),
        ["expirationTime"] = rpc.ExpirationTime,
        ["request"] = new JsonObject
        {
            ["id"] = rpc.Id.ToString(),
            ["tenantId"] = EntityJson.Id("TENANT", rpc.TenantId),
            ["deviceId"] = EntityJson.Id("DEVICE", rpc.DeviceId),
            ["oneway"] = rpc.OneWay,
            ["expirationTime"] = rpc.ExpirationTime,
            ["body"] = new JsonObject { ["method"] = rpc.Method, ["params"] = rpc.ParamsJson },
            ["persisted"] = true,
            ["retries"] = rpc.Retries,
            ["additionalInfo"] = ParseOrText(rpc.AdditionalInfoJson),
        },
        ["response"] = ParseOrText(rpc.ResponseJson),
        ["status"] = rpc.Status.ToString().ToUpperInvariant(),
        ["additionalInfo"] = ParseOrText(rpc.AdditionalInfoJson),
    };

    private static JsonNode? ParseOrText(string? json)
    {
        if (json is null)
        {
            return null;
        }

        try
        {
            return JsonNode.Parse(json);
        }
        catch (JsonException)
        {
            return JsonValue.Create(json);
        }
    }
}
