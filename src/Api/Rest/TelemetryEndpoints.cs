using System.Globalization;
using System.Text.Json.Nodes;
using Perf.Core;
using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Api.Rest;

/// <summary>Attributes and time series under <c>/api/plugins/telemetry/{entityType}/{entityId}</c>.</summary>
internal static class TelemetryEndpoints
{
    private const string Prefix = "/plugins/telemetry/{entityType}/{entityId:guid}";

    public static void MapTelemetryEndpoints(this RouteGroupBuilder api)
    {
        api.MapPost(Prefix + "/attributes/{scope}", SaveAttributes).Roles(Authority.TenantAdmin, Authority.CustomerUser);
        api.MapPost(Prefix + "/{scope:regex(^(SERVER_SCOPE|SHARED_SCOPE|CLIENT_SCOPE)$)}", SaveAttributes).Roles(Authority.TenantAdmin, Authority.CustomerUser);
        api.MapDelete(Prefix + "/{scope:regex(^(SERVER_SCOPE|SHARED_SCOPE|CLIENT_SCOPE)$)}", DeleteAttributes).Roles(Authority.TenantAdmin, Authority.CustomerUser);

        // The reference's saveDeviceAttributes/deleteDeviceAttributes, which the SDKs' save_device_attributes calls:
        // the device's id without the entity type.
        const string DevicePrefix = "/plugins/telemetry/{deviceId:guid}/{scope:regex(^(SERVER_SCOPE|SHARED_SCOPE|CLIENT_SCOPE)$)}";
        api.MapPost(DevicePrefix, (Guid deviceId, string scope, HttpContext context, PerfEngine engine, KeyTable keyTable) =>
            SaveAttributes("DEVICE", deviceId, scope, context, engine, keyTable)).Roles(Authority.TenantAdmin, Authority.CustomerUser);
        api.MapDelete(DevicePrefix, (Guid deviceId, string scope, string? keys, HttpContext context, PerfEngine engine) =>
            DeleteAttributes("DEVICE", deviceId, scope, keys, context, engine)).Roles(Authority.TenantAdmin, Authority.CustomerUser);
        api.MapGet(Prefix + "/values/attributes", (string entityType, Guid entityId, string? keys, HttpContext context, PerfEngine engine) =>
            ReadAttributes(entityType, entityId, null, keys, context, engine));
        api.MapGet(Prefix + "/values/attributes/{scope}", (string entityType, Guid entityId, string scope, string? keys, HttpContext context, PerfEngine engine) =>
            ReadAttributes(entityType, entityId, scope, keys, context, engine));
        api.MapGet(Prefix + "/keys/attributes", (string entityType, Guid entityId, HttpContext context, PerfEngine engine) =>
            AttributeKeys(entityType, entityId, null, context, engine));
        api.MapGet(Prefix + "/keys/attributes/{scope}", (string entityType, Guid entityId, string scope, HttpContext context, PerfEngine engine) =>
            AttributeKeys(entityType, entityId, scope, context, engine));
        api.MapGet(Prefix + "/keys/timeseries", (string entityType, Guid entityId, HttpContext context, PerfEngine engine) =>
            Resolve(entityType, entityId, context, engine, out var device) ?? Results.Json(engine.Telemetry.GetKeys(device!.Id)));
        api.MapGet(Prefix + "/values/timeseries", ReadTimeseries);
        api.MapPost(Prefix + "/timeseries/{scope}", SaveTimeseries).Roles(Authority.TenantAdmin, Authority.CustomerUser);

        // The reference's saveEntityTelemetryWithTTL: "the ttl parameter takes effect only in case of Cassandra DB". On
        // its SQL storage, as here, the points are saved as without it and kept by the retention (TELEMETRY_RETENTION_DAYS).
        api.MapPost(Prefix + "/timeseries/{scope}/{ttl}", (string entityType, Guid entityId, string ttl, HttpContext context, PerfEngine engine, KeyTable keyTable) =>
            long.TryParse(ttl, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _)
                ? SaveTimeseries(entityType, entityId, context, engine, keyTable)
                : Task.FromResult(ApiError.BadRequest($"ttl '{ttl}' is not a number of seconds")))
            .Roles(Authority.TenantAdmin, Authority.CustomerUser);
        api.MapDelete(Prefix + "/timeseries/delete", DeleteTimeseries).Roles(Authority.TenantAdmin, Authority.CustomerUser);
    }

    /// <summary>The attribute keys of one scope, or of all three when <paramref name="scope"/> is null; sorted.</summary>
    private static IResult AttributeKeys(string entityType, Guid entityId, string? scope, HttpContext context, PerfEngine engine)
    {
        if (Resolve(entityType, entityId, context, engine, out var device) is { } error)
        {
            return error;
        }

        AttributeScope one = default;
        if (scope is not null && !TryScope(scope, out one))
        {
            return ApiError.BadRequest($"Invalid attribute scope '{scope}'");
        }

        var keys = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var s in scope is null ? [AttributeScope.Client, AttributeScope.Server, AttributeScope.Shared] : new[] { one })
        {
            foreach (var a in engine.Attributes.Get(device!.Id, s))
            {
                keys.Add(a.Entry.Key);
            }
        }

        return Results.Json(keys);
    }

    private static IResult? Resolve(string entityType, Guid entityId, HttpContext context, PerfEngine engine, out Device? device)
    {
        device = null;
        if (!string.Equals(entityType, "DEVICE", StringComparison.OrdinalIgnoreCase))
        {
            return ApiError.BadRequest($"entityType '{entityType}' is not supported here; use DEVICE");
        }

        device = DeviceEndpoints.Visible(engine, context, entityId);
        return device is null ? ApiError.NotFound() : null;
    }

    private static bool TryScope(string scope, out AttributeScope result)
    {
        result = scope switch
        {
            "SERVER_SCOPE" => AttributeScope.Server,
            "SHARED_SCOPE" => AttributeScope.Shared,
            "CLIENT_SCOPE" => AttributeScope.Client,
            _ => 0,
        };
        return result != 0;
    }

    private static async Task<IResult> SaveAttributes(string entityType, Guid entityId, string scope, HttpContext context, PerfEngine engine, KeyTable keyTable)
    {
        if (Resolve(entityType, entityId, context, engine, out var device) is { } error)
        {
            return error;
        }

        if (!TryScope(scope, out var attributeScope) || attributeScope == AttributeScope.Client)
        {
            return ApiError.BadRequest($"Invalid attribute scope '{scope}': use SERVER_SCOPE or SHARED_SCOPE");
        }

        var body = await ReadBodyAsync(context.Request);
        if (body.Error is not null)
        {
            return body.Error;
        }

        var entries = new List<KvEntry>();
        if (!TelemetryJsonParser.TryParseAttributes(body.Bytes, keyTable, entries, out var parseError))
        {
            return ApiError.BadRequest($"Invalid attributes JSON: {parseError.Message}");
        }

        if (entries.Count == 0)
        {
            return ApiError.BadRequest("No attributes data found in request body!"); // the reference's answer
        }

        await engine.Attributes.SaveAsync(device!.Id, attributeScope, entries);
        return Results.Ok();
    }

    private static async Task<IResult> DeleteAttributes(string entityType, Guid entityId, string scope, string? keys, HttpContext context, PerfEngine engine)
    {
        if (Resolve(entityType, entityId, context, engine, out var device) is { } error)
        {
            return error;
        }

        if (!TryScope(scope, out var attributeScope))
        {
            return ApiError.BadRequest($"Invalid attribute scope '{scope}'");
        }

        if (KvJson.Keys(keys) is not { } keyList)
        {
            return ApiError.BadRequest("'keys' is required");
        }

        await engine.Attributes.DeleteAsync(device!.Id, attributeScope, keyList);
        return Results.Ok();
    }

    private static IResult ReadAttributes(string entityType, Guid entityId, string? scope, string? keys, HttpContext context, PerfEngine engine)
    {
        if (Resolve(entityType, entityId, context, engine, out var device) is { } error)
        {
            return error;
        }

        AttributeScope[] scopes;
        if (scope is null)
        {
            scopes = [AttributeScope.Client, AttributeScope.Shared, AttributeScope.Server];
        }
        else if (TryScope(scope, out var one))
        {
            scopes = [one];
        }
        else
        {
            return ApiError.BadRequest($"Invalid attribute scope '{scope}'");
        }

        var keyList = KvJson.Keys(keys);
        var result = new JsonArray();
        foreach (var s in scopes)
        {
            foreach (var attribute in engine.Attributes.Get(device!.Id, s, keyList))
            {
                result.Add(new JsonObject
                {
                    ["lastUpdateTs"] = attribute.LastUpdateTs,
                    ["key"] = attribute.Entry.Key,
                    ["value"] = KvJson.Value(attribute.Entry, strict: true),
                });
            }
        }

        return Results.Json(result);
    }

    private static IResult ReadTimeseries(string entityType, Guid entityId, HttpContext context, PerfEngine engine, string? keys,
        long? startTs, long? endTs, long? interval, int? limit, string? agg, string? orderBy, bool? useStrictDataTypes)
    {
        if (Resolve(entityType, entityId, context, engine, out var device) is { } error)
        {
            return error;
        }

        var strict = useStrictDataTypes ?? false;
        var keyList = KvJson.Keys(keys);
        var result = new JsonObject();
        if (startTs is null && endTs is null)
        {
            foreach (var latest in engine.Telemetry.GetLatest(device!.Id, keyList))
            {
                result[latest.Entry.Key] = new JsonArray(Point(latest, strict));
            }

            // As the reference's wrapNullTsKvEntry: a key asked for with no latest value answers a null value stamped now.
            foreach (var key in keyList ?? [])
            {
                if (!result.ContainsKey(key))
                {
                    result[key] = new JsonArray(new JsonObject { ["ts"] = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), ["value"] = null });
                }
            }

            return Results.Json(result);
        }

        if (startTs is null || endTs is null)
        {
            return ApiError.BadRequest("History needs both 'startTs' and 'endTs'");
        }

        if (keyList is null)
        {
            return ApiError.BadRequest("'keys' is required for a history query");
        }

        if (!Enum.TryParse<Aggregation>(agg ?? "NONE", ignoreCase: true, out var aggregation))
        {
            return ApiError.BadRequest($"Invalid 'agg' '{agg}': use NONE, MIN, MAX, AVG, SUM or COUNT");
        }

        if (interval < 0)
        {
            return ApiError.BadRequest($"'interval' must be greater than 0, but got {interval}");
        }

        // As the reference: an interval of 0 (the default) is a NONE aggregation; aggregated buckets come oldest first,
        // every one of them (orderBy and limit are for raw points).
        var descending = !string.Equals(orderBy, "ASC", StringComparison.OrdinalIgnoreCase);
        foreach (var key in keyList)
        {
            var points = engine.Telemetry.Query(device!.Id, key, startTs.Value, endTs.Value, interval ?? 0, limit ?? 100, aggregation, descending);
            if (points.Count == 0)
            {
                continue;
            }

            var array = new JsonArray();
            foreach (var point in points)
            {
                array.Add(Point(point, strict));
            }

            result[key] = array;
        }

        return Results.Json(result);
    }

    private static JsonObject Point(in TsKvEntry point, bool strict) => new()
    {
        ["ts"] = point.Ts,
        ["value"] = KvJson.Value(point.Entry, strict),
    };

    private static async Task<IResult> SaveTimeseries(string entityType, Guid entityId, HttpContext context, PerfEngine engine, KeyTable keyTable)
    {
        if (Resolve(entityType, entityId, context, engine, out var device) is { } error)
        {
            return error;
        }

        var body = await ReadBodyAsync(context.Request);
        if (body.Error is not null)
        {
            return body.Error;
        }

        var entries = new List<TsKvEntry>();
        if (!TelemetryJsonParser.TryParseTelemetry(body.Bytes, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), keyTable, entries, out var parseError))
        {
            return ApiError.BadRequest($"Invalid telemetry JSON: {parseError.Message}");
        }

        if (entries.Count == 0)
        {
            return ApiError.BadRequest("No timeseries data found in request body!"); // the reference's answer
        }

        await engine.Telemetry.SaveAsync(device!.Id, entries);
        return Results.Ok();
    }

    private static async Task<IResult> DeleteTimeseries(string entityType, Guid entityId, HttpContext context, PerfEngine engine, string? keys,
        bool? deleteAllDataForKeys, long? startTs, long? endTs, bool? deleteLatest, bool? rewriteLatestIfDeleted)
    {
        if (Resolve(entityType, entityId, context, engine, out var device) is { } error)
        {
            return error;
        }

        if (KvJson.Keys(keys) is not { } keyList)
        {
            return ApiError.BadRequest("'keys' is required");
        }

        if (deleteAllDataForKeys == true)
        {
            await engine.Telemetry.DeleteAsync(device!.Id, keyList, deleteLatest: true, deleteHistory: true);
        }
        else
        {
            if (startTs is null || endTs is null)
            {
                return ApiError.BadRequest("'startTs' and 'endTs' are required unless deleteAllDataForKeys=true");
            }

            await engine.Telemetry.DeleteAsync(device!.Id, keyList, deleteLatest ?? true, deleteHistory: true, startTs.Value, endTs.Value, rewriteLatestIfDeleted ?? false);
        }

        return Results.Ok();
    }

    private static Task<(byte[] Bytes, IResult? Error)> ReadBodyAsync(HttpRequest request) => RestBody.ReadBytesAsync(request);
}
