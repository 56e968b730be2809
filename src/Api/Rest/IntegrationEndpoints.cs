using System.Text.Json.Nodes;
using Perf.Api.Tcp;
using Perf.Core;
using Perf.Core.Domain;
using Perf.Kestrel.Tcp;

namespace Perf.Api.Rest;

/// <summary>
/// Data converters and TCP integrations in the reference's paths and shapes (<c>/api/converter</c>,
/// <c>/api/integration</c>), their events, and the "Test payload decoder" tool. Tenant administrators only;
/// entities of other tenants answer 404.
/// </summary>
internal static class IntegrationEndpoints
{
    public static void MapIntegrationEndpoints(this RouteGroupBuilder api)
    {
        // ---------------------------------------------------------------- converters
        api.MapPost("/converter", async (HttpContext context, TcpIntegrationService integrations) =>
        {
            var (body, error) = await RestBody.ReadObjectAsync(context.Request);
            if (error is not null)
            {
                return error;
            }

            var result = await integrations.SaveConverterAsync(JwtAuthFilter.GetUser(context).TenantId, body!);
            return result.Value is { } converter ? Results.Json(converter.Json) : Error(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/converter/{id:guid}", (Guid id, HttpContext context, TcpIntegrationService integrations) =>
            integrations.GetConverter(JwtAuthFilter.GetUser(context).TenantId, id) is { } converter
                ? Results.Json(converter.Json)
                : ApiError.NotFound()).Roles(Authority.TenantAdmin);

        api.MapGet("/converters", (HttpContext context, TcpIntegrationService integrations, int? pageSize, int? page) =>
        {
            var all = integrations.ListConverters(JwtAuthFilter.GetUser(context).TenantId);
            return Results.Json(EntityJson.Page(EntityJson.PageOf(all, pageSize ?? 100, page ?? 0), c => c.Json.DeepClone()));
        }).Roles(Authority.TenantAdmin);

        api.MapDelete("/converter/{id:guid}", async (Guid id, HttpContext context, TcpIntegrationService integrations) =>
        {
            var result = await integrations.DeleteConverterAsync(JwtAuthFilter.GetUser(context).TenantId, id);
            return result.Value ? Results.Ok() : Error(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/converter/{id:guid}/events", (Guid id, HttpContext context, TcpIntegrationService integrations, int? pageSize, int? page) =>
            ConverterEvents(integrations, JwtAuthFilter.GetUser(context).TenantId, id, pageSize, page)).Roles(Authority.TenantAdmin);

        // The reference's "Test payload decoder": {"metadata":{},"payload":"<base64>","decoder":"..."} -> {"output","error"}.
        api.MapPost("/converter/testUpLink", async (HttpContext context, string? scriptLang) =>
        {
            var (body, error) = await RestBody.ReadObjectAsync(context.Request);
            if (error is not null)
            {
                return error;
            }

            byte[] payload;
            try
            {
                payload = Convert.FromBase64String(RestBody.String(body!, "payload") ?? string.Empty);
            }
            catch (FormatException)
            {
                return ApiError.BadRequest("'payload' should be base64");
            }

            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            if (body!["metadata"] is JsonObject meta)
            {
                foreach (var (key, value) in meta)
                {
                    metadata[key] = value is JsonValue v && v.TryGetValue<string>(out var s) ? s : value?.ToJsonString() ?? string.Empty;
                }
            }

            var lang = Enum.TryParse<TcpScriptLang>(scriptLang ?? "JS", ignoreCase: true, out var parsed) ? parsed : TcpScriptLang.JS;
            var configuration = new TcpConverterConfiguration { ScriptLang = lang, Decoder = RestBody.String(body, "decoder") };
            var (output, failure) = TestDecoder(configuration, payload, metadata);
            return Results.Json(new JsonObject { ["output"] = output ?? string.Empty, ["error"] = failure ?? string.Empty });
        }).Roles(Authority.TenantAdmin);

        // ---------------------------------------------------------------- integrations
        api.MapPost("/integration", async (HttpContext context, TcpIntegrationService integrations) =>
        {
            var (body, error) = await RestBody.ReadObjectAsync(context.Request);
            if (error is not null)
            {
                return error;
            }

            var result = await integrations.SaveIntegrationAsync(JwtAuthFilter.GetUser(context).TenantId, body!);
            return result.Value is { } integration ? Results.Json(TcpIntegrationService.Render(integration)) : Error(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/integration/{id:guid}", (Guid id, HttpContext context, TcpIntegrationService integrations) =>
            integrations.GetIntegration(JwtAuthFilter.GetUser(context).TenantId, id) is { } integration
                ? Results.Json(TcpIntegrationService.Render(integration))
                : ApiError.NotFound()).Roles(Authority.TenantAdmin);

        api.MapGet("/integrations", (HttpContext context, TcpIntegrationService integrations, int? pageSize, int? page) =>
        {
            var all = integrations.ListIntegrations(JwtAuthFilter.GetUser(context).TenantId);
            return Results.Json(EntityJson.Page(EntityJson.PageOf(all, pageSize ?? 100, page ?? 0), TcpIntegrationService.Render));
        }).Roles(Authority.TenantAdmin);

        api.MapDelete("/integration/{id:guid}", async (Guid id, HttpContext context, TcpIntegrationService integrations) =>
        {
            var result = await integrations.DeleteIntegrationAsync(JwtAuthFilter.GetUser(context).TenantId, id);
            return result.Value ? Results.Ok() : Error(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapPost("/integration/{id:guid}/enable", (Guid id, HttpContext context, TcpIntegrationService integrations) =>
            SetEnabledAsync(integrations, context, id, enabled: true)).Roles(Authority.TenantAdmin);

        api.MapPost("/integration/{id:guid}/disable", (Guid id, HttpContext context, TcpIntegrationService integrations) =>
            SetEnabledAsync(integrations, context, id, enabled: false)).Roles(Authority.TenantAdmin);

        // The default integration (configuration, TCP_INTEGRATION_PORT) belongs to the first tenant and has no id.
        api.MapGet("/integration/default/events", (HttpContext context, PerfEngine engine, TcpIntegration defaultIntegration, int? pageSize, int? page) =>
        {
            if (engine.Registry.ListTenants() is not [var first, ..] || first.Id != JwtAuthFilter.GetUser(context).TenantId)
            {
                return ApiError.NotFound();
            }

            var events = defaultIntegration.IntegrationEvents.Snapshot().Concat(defaultIntegration.UplinkEvents.Snapshot())
                .Concat(defaultIntegration.DownlinkEvents.Snapshot()).OrderByDescending(e => e.Ts).ToArray();
            return Results.Json(EntityJson.Page(EntityJson.PageOf(events, pageSize ?? 100, page ?? 0), e => Event(e, "INTEGRATION", Guid.Empty, "DEBUG_INTEGRATION", "Uplink")));
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/integration/{id:guid}/events", (Guid id, HttpContext context, TcpIntegrationService integrations, int? pageSize, int? page) =>
            IntegrationEvents(integrations, JwtAuthFilter.GetUser(context).TenantId, id, pageSize, page)).Roles(Authority.TenantAdmin);

        // The reference's events path: /api/events/{CONVERTER|INTEGRATION}/{id}[/{eventType}] (the event type is not filtered on).
        api.MapGet("/events/{entityType}/{id:guid}/{eventType?}", (string entityType, Guid id, string? eventType, HttpContext context,
            TcpIntegrationService integrations, int? pageSize, int? page) =>
        {
            var tenantId = JwtAuthFilter.GetUser(context).TenantId;
            return entityType.ToUpperInvariant() switch
            {
                "CONVERTER" => ConverterEvents(integrations, tenantId, id, pageSize, page),
                "INTEGRATION" => IntegrationEvents(integrations, tenantId, id, pageSize, page),
                _ => ApiError.BadRequest($"Events of entity type '{entityType}' are not kept: use CONVERTER or INTEGRATION"),
            };
        }).Roles(Authority.TenantAdmin);
    }

    /// <summary>
    /// Runs a decoder once and renders what it returned as the reference's test tool does: the decoded
    /// message as JSON text (an array when the script returned several), telemetry flat when it has one ts.
    /// </summary>
    private static (string? Output, string? Error) TestDecoder(TcpConverterConfiguration configuration, byte[] payload, Dictionary<string, string> metadata)
    {
        IUplinkConverter converter;
        try
        {
            converter = TcpIntegration.CreateUplinkConverter(configuration, metadata, new Core.Telemetry.KeyTable(), static () => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        }
        catch (ArgumentException ex)
        {
            return (null, ex.Message);
        }

        var batch = new UplinkBatch();
        if (!converter.TryConvert(payload, batch, out var error))
        {
            return (null, error ?? "conversion failed");
        }

        var messages = new JsonArray();
        for (int i = 0; i < batch.Count; i++)
        {
            var message = batch[i];
            var attributes = new JsonObject();
            foreach (var kv in message.Attributes)
            {
                attributes[kv.Key] = KvJson.Value(kv, strict: true);
            }

            JsonNode telemetry;
            var groups = message.Telemetry.GroupBy(t => t.Ts).ToArray();
            if (groups.Length <= 1)
            {
                var flat = new JsonObject();
                foreach (var entry in message.Telemetry)
                {
                    flat[entry.Entry.Key] = KvJson.Value(entry.Entry, strict: true);
                }

                telemetry = flat;
            }
            else
            {
                var series = new JsonArray();
                foreach (var group in groups)
                {
                    var values = new JsonObject();
                    foreach (var entry in group)
                    {
                        values[entry.Entry.Key] = KvJson.Value(entry.Entry, strict: true);
                    }

                    series.Add(new JsonObject { ["ts"] = group.Key, ["values"] = values });
                }

                telemetry = series;
            }

            messages.Add(new JsonObject
            {
                ["deviceName"] = message.DeviceName,
                ["deviceType"] = message.DeviceType,
                ["telemetry"] = telemetry,
                ["attributes"] = attributes,
            });
        }

        return ((messages.Count == 1 ? messages[0]! : messages).ToJsonString(), null);
    }

    private static async Task<IResult> SetEnabledAsync(TcpIntegrationService integrations, HttpContext context, Guid id, bool enabled)
    {
        var result = await integrations.SetEnabledAsync(JwtAuthFilter.GetUser(context).TenantId, id, enabled);
        return result.Value is { } integration ? Results.Json(TcpIntegrationService.Render(integration)) : Error(result.Status, result.Error);
    }

    private static IResult ConverterEvents(TcpIntegrationService integrations, Guid tenantId, Guid id, int? pageSize, int? page)
    {
        if (integrations.GetConverter(tenantId, id) is not { } converter)
        {
            return ApiError.NotFound();
        }

        var events = integrations.ConverterEvents(converter);
        var kind = converter.IsUplink ? "Uplink" : "Downlink";
        return Results.Json(EntityJson.Page(EntityJson.PageOf(events, pageSize ?? 100, page ?? 0), e => Event(e, "CONVERTER", id, "DEBUG_CONVERTER", kind)));
    }

    private static IResult IntegrationEvents(TcpIntegrationService integrations, Guid tenantId, Guid id, int? pageSize, int? page)
    {
        if (integrations.GetIntegration(tenantId, id) is not { } integration)
        {
            return ApiError.NotFound();
        }

        var events = integration.Integration?.IntegrationEvents.Snapshot() ?? [];
        return Results.Json(EntityJson.Page(EntityJson.PageOf(events, pageSize ?? 100, page ?? 0), e => Event(e, "INTEGRATION", id, "DEBUG_INTEGRATION", "Uplink")));
    }

    /// <summary>
    /// One event in the reference's shape (<c>{"createdTime","entityId","type","body":{...}}</c>). The door keeps
    /// In, Out and Error as separate records, so <c>eventType</c> says which and the body holds
    /// <c>in</c>, <c>out</c> or <c>error</c> (an error's <c>in</c> is the payload that caused it).
    /// </summary>
    private static JsonObject Event(ConverterEvent e, string entityType, Guid entityId, string type, string direction)
    {
        var body = new JsonObject { ["type"] = direction };
        switch (e.Type)
        {
            case ConverterEventType.In:
                body["in"] = e.Data;
                body["metadata"] = e.Metadata;
                break;
            case ConverterEventType.Out:
                body["out"] = e.Data;
                body["metadata"] = e.Metadata;
                break;
            default:
                body["error"] = e.Data;
                body["in"] = e.Metadata;
                break;
        }

        return new JsonObject
        {
            ["createdTime"] = e.Ts,
            ["entityId"] = EntityJson.Id(entityType, entityId),
            ["type"] = type,
            ["eventType"] = e.Type.ToString(),
            ["body"] = body,
        };
    }

    private static IResult Error(int status, string? message) => status switch
    {
        404 => ApiError.NotFound(message ?? "Requested item wasn't found!"),
        _ => ApiError.BadRequest(message ?? "Bad request"),
    };
}
