using System.Text.Json.Nodes;
using Perf.Api.Edge;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>Edges as entities and their device assignments, in the reference's paths and shapes.</summary>
internal static class EdgeEndpoints
{
    public static void MapEdgeEndpoints(this RouteGroupBuilder api)
    {
        api.MapPost("/edge", async (HttpContext context, PerfEngine engine, EdgeHub hub) =>
        {
            var user = JwtAuthFilter.GetUser(context);
            var (body, error) = await RestBody.ReadObjectAsync(context.Request);
            if (error is not null)
            {
                return error;
            }

            var name = RestBody.String(body!, "name");
            if (string.IsNullOrWhiteSpace(name))
            {
                return ApiError.BadRequest("Edge name should be specified!");
            }

            var label = RestBody.String(body!, "label");
            var info = body!["additionalInfo"] is JsonObject o ? o.ToJsonString() : null;
            RegistryResult<Perf.Core.Domain.Edge> result;
            if (EntityJson.ReadId(body["id"]) is { } id && id != Guid.Empty)
            {
                // The reference's save with an existing id: the edge is updated and, when connected, told its new
                // configuration (EdgeUpdateMsg); its assignments and queue stay.
                if (Visible(engine, context, id) is null)
                {
                    return ApiError.NotFound();
                }

                result = await engine.Registry.UpdateEdgeAsync(id, name, RestBody.String(body, "type"),
                    NullIfEmpty(RestBody.String(body, "routingKey")), NullIfEmpty(RestBody.String(body, "secret")), label, info);
                if (result.IsOk && hub.Connection(id) is { } connection)
                {
                    await connection.WriteAsync(new Perf.Api.Edge.Protos.ResponseMsg
                    {
                        EdgeUpdateMsg = new Perf.Api.Edge.Protos.EdgeUpdateMsg { Configuration = EdgeProto.Configuration(result.Value!) },
                    });
                }
            }
            else
            {
                result = await engine.Registry.CreateEdgeAsync(user.TenantId, name, RestBody.String(body, "type"),
                    NullIfEmpty(RestBody.String(body, "routingKey")), NullIfEmpty(RestBody.String(body, "secret")),
                    EntityJson.ReadId(body["customerId"]) ?? Guid.Empty, label, info);
            }

            return result.IsOk ? Results.Json(Edge(result.Value!, engine, hub)) : TenantEndpoints.RegistryError(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/edge/{id:guid}", (Guid id, HttpContext context, PerfEngine engine, EdgeHub hub) =>
            Visible(engine, context, id) is { } edge ? Results.Json(Edge(edge, engine, hub)) : ApiError.NotFound())
            .Roles(Authority.TenantAdmin); // the body carries the edge's secret: never for customer users


        api.MapGet("/tenant/edges", (HttpContext context, PerfEngine engine, EdgeHub hub, string? edgeName, int? pageSize, int? page, string? textSearch) =>
        {
            var tenantId = JwtAuthFilter.GetUser(context).TenantId;
            if (edgeName is not null)
            {
                // The reference's getTenantEdge by name.
                return engine.Registry.ListEdges(tenantId).FirstOrDefault(e => e.Name == edgeName) is { } named
                    ? Results.Json(Edge(named, engine, hub))
                    : ApiError.NotFound($"Edge with name '{edgeName}' wasn't found");
            }

            return EdgePage(engine, hub, tenantId, null, pageSize, page, textSearch, info: false);
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/tenant/edgeInfos", (HttpContext context, PerfEngine engine, EdgeHub hub, int? pageSize, int? page, string? textSearch) =>
            EdgePage(engine, hub, JwtAuthFilter.GetUser(context).TenantId, null, pageSize, page, textSearch, info: true))
            .Roles(Authority.TenantAdmin);

        api.MapGet("/customer/{customerId:guid}/edges", (Guid customerId, HttpContext context, PerfEngine engine, EdgeHub hub, int? pageSize, int? page, string? textSearch) =>
            engine.Registry.GetCustomer(customerId) is { } customer && customer.TenantId == JwtAuthFilter.GetUser(context).TenantId
                ? EdgePage(engine, hub, customer.TenantId, customerId, pageSize, page, textSearch, info: false)
                : ApiError.NotFound())
            .Roles(Authority.TenantAdmin);

        api.MapGet("/edge/info/{id:guid}", (Guid id, HttpContext context, PerfEngine engine, EdgeHub hub) =>
            Visible(engine, context, id) is { } edge ? Results.Json(Info(edge, engine, hub)) : ApiError.NotFound())
            .Roles(Authority.TenantAdmin);

        // The reference's isEdgesSupportEnabled: this endpoint exists only when the edge door is on.
        api.MapGet("/edges/enabled", () => Results.Json(true)).Roles(Authority.SysAdmin, Authority.TenantAdmin, Authority.CustomerUser);

        api.MapGet("/edge/types", (HttpContext context, PerfEngine engine) =>
        {
            var tenantId = JwtAuthFilter.GetUser(context).TenantId;
            var types = new JsonArray();
            foreach (var type in engine.Registry.ListEdges(tenantId).Select(e => e.Type).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            {
                types.Add(new JsonObject { ["tenantId"] = EntityJson.Id("TENANT", tenantId), ["entityType"] = "EDGE", ["type"] = type });
            }

            return Results.Json(types);
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/edges", (HttpContext context, PerfEngine engine, EdgeHub hub, string? edgeIds) =>
        {
            if (!EntityJson.TryReadIds(edgeIds, out var ids, out var invalid))
            {
                return ApiError.BadRequest($"Invalid edge id '{invalid}'");
            }

            var found = new JsonArray();
            foreach (var id in ids)
            {
                if (Visible(engine, context, id) is { } edge)
                {
                    found.Add(Edge(edge, engine, hub));
                }
            }

            return Results.Json(found);
        }).Roles(Authority.TenantAdmin);

        api.MapPost("/customer/{customerId:guid}/edge/{edgeId:guid}", async (Guid customerId, Guid edgeId, HttpContext context, PerfEngine engine, EdgeHub hub) =>
        {
            if (Visible(engine, context, edgeId) is null || engine.Registry.GetCustomer(customerId) is not { } customer ||
                customer.TenantId != JwtAuthFilter.GetUser(context).TenantId)
            {
                return ApiError.NotFound();
            }

            var result = await engine.Registry.SetEdgeCustomerAsync(edgeId, customerId);
            return result.IsOk ? Results.Json(Edge(result.Value!, engine, hub)) : TenantEndpoints.RegistryError(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapDelete("/customer/edge/{edgeId:guid}", async (Guid edgeId, HttpContext context, PerfEngine engine, EdgeHub hub) =>
        {
            if (Visible(engine, context, edgeId) is not { } edge)
            {
                return ApiError.NotFound();
            }

            if (edge.CustomerId == Guid.Empty)
            {
                return ApiError.BadRequest("Edge isn't assigned to any customer!");
            }

            var result = await engine.Registry.SetEdgeCustomerAsync(edgeId, Guid.Empty);
            return result.IsOk ? Results.Json(Edge(result.Value!, engine, hub)) : TenantEndpoints.RegistryError(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapDelete("/edge/{id:guid}", async (Guid id, HttpContext context, PerfEngine engine, EdgeHub hub) =>
        {
            if (Visible(engine, context, id) is null)
            {
                return ApiError.NotFound();
            }

            var result = await engine.Registry.DeleteEdgeAsync(id);
            if (!result.IsOk)
            {
                return TenantEndpoints.RegistryError(result.Status, result.Error);
            }

            hub.Connection(id)?.Close();
            await engine.Edges.RemoveEdgeAsync(id);
            return Results.Ok();
        }).Roles(Authority.TenantAdmin);

        api.MapPost("/edge/{edgeId:guid}/device/{deviceId:guid}", (Guid edgeId, Guid deviceId, HttpContext context, PerfEngine engine, EdgeHub hub) =>
            AssignAsync(edgeId, deviceId, context, engine, hub, assigned: true)).Roles(Authority.TenantAdmin);

        api.MapDelete("/edge/{edgeId:guid}/device/{deviceId:guid}", (Guid edgeId, Guid deviceId, HttpContext context, PerfEngine engine, EdgeHub hub) =>
            AssignAsync(edgeId, deviceId, context, engine, hub, assigned: false)).Roles(Authority.TenantAdmin);

        api.MapGet("/edge/{edgeId:guid}/devices", (Guid edgeId, HttpContext context, PerfEngine engine, int? pageSize, int? page) =>
        {
            if (Visible(engine, context, edgeId) is null)
            {
                return ApiError.NotFound();
            }

            if (pageSize is null or <= 0)
            {
                return ApiError.BadRequest("'pageSize' is required and must be positive");
            }

            var devices = engine.Edges.AssignedDevices(edgeId).Select(engine.Registry.GetDevice).OfType<Device>()
                .OrderBy(d => d.CreatedTime).ToArray();
            return Results.Json(EntityJson.Page(EntityJson.PageOf(devices, pageSize.Value, page ?? 0), d => EntityJson.Device(d)));
        }).Roles(Authority.TenantAdmin);

        api.MapPost("/edge/sync/{edgeId:guid}", async (Guid edgeId, HttpContext context, PerfEngine engine, EdgeHub hub) =>
        {
            if (Visible(engine, context, edgeId) is null)
            {
                return ApiError.NotFound();
            }

            var connection = hub.Connection(edgeId);
            var seq = await hub.QueueFullSyncAsync(edgeId, connection?.EdgeVersion ?? engine.Edges.GetConnectionInfo(edgeId).EdgeVersion);
            if (connection is not null)
            {
                Interlocked.Exchange(ref connection.PendingSyncCompletedSeq, seq);
            }

            return Results.Ok();
        }).Roles(Authority.TenantAdmin);
    }

    private static async Task<IResult> AssignAsync(Guid edgeId, Guid deviceId, HttpContext context, PerfEngine engine, EdgeHub hub, bool assigned)
    {
        if (Visible(engine, context, edgeId) is null || DeviceEndpoints.Visible(engine, context, deviceId) is not { } device)
        {
            return ApiError.NotFound();
        }

        await hub.SetAssignmentAsync(edgeId, deviceId, assigned);
        return Results.Json(EntityJson.Device(device));
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    /// <summary>The edge when it belongs to the caller's tenant; null (answered as 404) otherwise.</summary>
    private static IResult EdgePage(PerfEngine engine, EdgeHub hub, Guid tenantId, Guid? customerId, int? pageSize, int? page, string? textSearch, bool info)
    {
        if (pageSize is null or <= 0)
        {
            return ApiError.BadRequest("'pageSize' is required and must be positive");
        }

        var edges = engine.Registry.ListEdges(tenantId)
            .Where(e => (customerId is null || e.CustomerId == customerId) &&
                (string.IsNullOrEmpty(textSearch) || e.Name.Contains(textSearch, StringComparison.OrdinalIgnoreCase)))
            .ToArray();
        return Results.Json(EntityJson.Page(EntityJson.PageOf(edges, pageSize.Value, page ?? 0), e => info ? Info(e, engine, hub) : Edge(e, engine, hub)));
    }

    /// <summary>The reference's EdgeInfo: the edge with its customer's title.</summary>
    private static JsonObject Info(Perf.Core.Domain.Edge edge, PerfEngine engine, EdgeHub hub)
    {
        var json = Edge(edge, engine, hub);
        json["customerTitle"] = edge.CustomerId == Guid.Empty ? null : engine.Registry.GetCustomer(edge.CustomerId)?.Title;
        json["customerIsPublic"] = false;
        return json;
    }

    private static Perf.Core.Domain.Edge? Visible(PerfEngine engine, HttpContext context, Guid edgeId) =>
        engine.Registry.GetEdge(edgeId) is { } edge && edge.TenantId == JwtAuthFilter.GetUser(context).TenantId ? edge : null;

    private static readonly Google.Protobuf.Reflection.EnumDescriptor EdgeVersionNames =
        Perf.Api.Edge.Protos.EdgeReflection.Descriptor.FindTypeByName<Google.Protobuf.Reflection.EnumDescriptor>("EdgeVersion");

    /// <summary>The additional info saved with the edge, with the server's view of its connection over it.</summary>
    private static JsonObject AdditionalInfo(Perf.Core.Domain.Edge edge, JsonObject connection)
    {
        var saved = edge.AdditionalInfoJson is null ? new JsonObject() : JsonNode.Parse(edge.AdditionalInfoJson) as JsonObject ?? new JsonObject();
        foreach (var (key, value) in connection.ToArray())
        {
            connection.Remove(key);
            saved[key] = value;
        }

        return saved;
    }

    private static JsonObject Edge(Perf.Core.Domain.Edge edge, PerfEngine engine, EdgeHub hub)
    {
        var info = engine.Edges.GetConnectionInfo(edge.Id);
        var failures = new JsonArray();
        foreach (var failure in engine.Edges.Failures(edge.Id).TakeLast(10))
        {
            failures.Add(new JsonObject { ["downlinkMsgId"] = failure.Seq, ["error"] = failure.Error, ["ts"] = failure.Ts });
        }

        return new JsonObject
        {
            ["id"] = EntityJson.Id("EDGE", edge.Id),
            ["createdTime"] = edge.CreatedTime,
            ["tenantId"] = EntityJson.Id("TENANT", edge.TenantId),
            ["customerId"] = EntityJson.Id("CUSTOMER", edge.CustomerId),
            ["name"] = edge.Name,
            ["type"] = edge.Type,
            ["label"] = edge.Label,
            ["routingKey"] = edge.RoutingKey,
            ["secret"] = edge.Secret,
            ["additionalInfo"] = AdditionalInfo(edge, new JsonObject
            {
                ["connected"] = hub.IsConnected(edge.Id),
                // The reference's name of the version (V_4_4_0), as its edge sends it.
                ["edgeVersion"] = info.LastConnectTs == 0 ? null
                    : EdgeVersionNames.FindValueByNumber(info.EdgeVersion)?.Name ?? info.EdgeVersion.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["lastConnectTime"] = info.LastConnectTs == 0 ? null : info.LastConnectTs,
                ["pendingDownlinks"] = engine.Edges.PendingCount(edge.Id),
                ["failedDownlinks"] = failures,
            }),
        };
    }
}
