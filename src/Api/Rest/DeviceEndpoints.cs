using System.Text.Json.Nodes;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>Devices and their credentials, in the reference's paths and shapes.</summary>
internal static class DeviceEndpoints
{
    public static void MapDeviceEndpoints(this RouteGroupBuilder api)
    {
        api.MapPost("/device", async (HttpContext context, PerfEngine engine, string? accessToken) =>
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
                return ApiError.BadRequest("Device name should be specified!");
            }

            if (body!.ContainsKey("deviceProfileId") && EntityJson.ReadId(body["deviceProfileId"]) is { } profile && profile != Guid.Empty &&
                profile != DeviceProfiles.DefaultId(user.TenantId))
            {
                return ApiError.BadRequest($"Device profile {profile} wasn't found: the tenant's profile is 'default'");
            }

            var info = body["additionalInfo"] is JsonObject o ? o.ToJsonString() : null;
            var registry = engine.Registry;
            RegistryResult<Device> result;
            if (EntityJson.ReadId(body["id"]) is { } id && id != Guid.Empty)
            {
                if (registry.GetDevice(id) is not { } existing || existing.TenantId != user.TenantId)
                {
                    return ApiError.NotFound();
                }

                // As the reference's saveDeviceWithAccessToken: accessToken applies to a new device only; an update keeps
                // the device's credentials, whatever their type.
                result = await registry.UpdateDeviceAsync(id, name, RestBody.String(body, "type"), RestBody.String(body, "label"), info);
            }
            else
            {
                var customerId = EntityJson.ReadId(body["customerId"]) ?? Guid.Empty;
                if (customerId != Guid.Empty && (registry.GetCustomer(customerId) is not { } c || c.TenantId != user.TenantId))
                {
                    return ApiError.BadRequest("'customerId' is not a customer of your tenant");
                }

                result = await registry.CreateDeviceAsync(
                    user.TenantId, name, RestBody.String(body, "type"), RestBody.String(body, "label"), info,
                    string.IsNullOrEmpty(accessToken) ? null : accessToken, customerId);
            }

            if (result.IsOk && body.ContainsKey("firmwareId") && EntityJson.ReadId(body["firmwareId"]) != result.Value!.FirmwareId)
            {
                // Assignment through the device body, as the reference's UI does: the core sets the fw_* shared attributes.
                return await OtaEndpoints.AssignAsync(result.Value!.Id, EntityJson.ReadId(body["firmwareId"]), context, engine);
            }

            return result.IsOk ? Results.Json(EntityJson.Device(result.Value!)) : TenantEndpoints.RegistryError(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/device/{id:guid}", (Guid id, HttpContext context, PerfEngine engine) =>
            Visible(engine, context, id) is { } device ? Results.Json(EntityJson.Device(device)) : ApiError.NotFound());

        api.MapGet("/device/info/{id:guid}", (Guid id, HttpContext context, PerfEngine engine) =>
            Visible(engine, context, id) is { } device ? Results.Json(Info(engine, device)) : ApiError.NotFound());

        // The reference's getDevicesByIds: the visible devices among the ids (unknown ones are left out).
        api.MapGet("/devices", (HttpContext context, PerfEngine engine, string? deviceIds) =>
        {
            if (!EntityJson.TryReadIds(deviceIds, out var ids, out var invalid))
            {
                return ApiError.BadRequest($"Invalid device id '{invalid}'");
            }

            var found = new JsonArray();
            foreach (var id in ids)
            {
                if (Visible(engine, context, id) is { } device)
                {
                    found.Add(EntityJson.Device(device));
                }
            }

            return Results.Json(found);
        }).Roles(Authority.TenantAdmin, Authority.CustomerUser);

        // The reference's getDeviceTypes: the distinct types of the tenant's devices.
        api.MapGet("/device/types", (HttpContext context, PerfEngine engine) =>
        {
            var user = JwtAuthFilter.GetUser(context);
            var types = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var device in engine.Registry.ListDevices(user.TenantId, null, int.MaxValue, 0).Data)
            {
                if (Access.CanSee(user, device))
                {
                    types.Add(device.Type);
                }
            }

            var result = new JsonArray();
            foreach (var type in types)
            {
                result.Add(new JsonObject { ["tenantId"] = EntityJson.Id("TENANT", user.TenantId), ["entityType"] = "DEVICE", ["type"] = type });
            }

            return Results.Json(result);
        }).Roles(Authority.TenantAdmin, Authority.CustomerUser);

        // The reference's saveDeviceWithCredentials: {"device":{...},"credentials":{...}} in one call.
        api.MapPost("/device-with-credentials", async (HttpContext context, PerfEngine engine) =>
        {
            var user = JwtAuthFilter.GetUser(context);
            var (body, error) = await RestBody.ReadObjectAsync(context.Request);
            if (error is not null)
            {
                return error;
            }

            if (body!["device"] is not JsonObject device || RestBody.String(device, "name") is not { Length: > 0 } name)
            {
                return ApiError.BadRequest("Device name should be specified!");
            }

            if (EntityJson.ReadId(device["id"]) is { } existing && existing != Guid.Empty)
            {
                return ApiError.BadRequest("Use POST /api/device to update a device; this call creates one with its credentials");
            }

            var credentials = body["credentials"] as JsonObject;
            var type = credentials is null ? EntityRegistry.AccessToken : RestBody.String(credentials, "credentialsType") ?? EntityRegistry.AccessToken;
            var customerId = EntityJson.ReadId(device["customerId"]) ?? Guid.Empty;
            if (customerId != Guid.Empty && (engine.Registry.GetCustomer(customerId) is not { } c || c.TenantId != user.TenantId))
            {
                return ApiError.BadRequest("'customerId' is not a customer of your tenant");
            }

            var token = type == EntityRegistry.AccessToken && credentials is not null ? RestBody.String(credentials, "credentialsId") : null;
            var created = await engine.Registry.CreateDeviceAsync(user.TenantId, name, RestBody.String(device, "type"), RestBody.String(device, "label"),
                device["additionalInfo"] is JsonObject info ? info.ToJsonString() : null, token, customerId);
            if (!created.IsOk)
            {
                return TenantEndpoints.RegistryError(created.Status, created.Error);
            }

            if (type != EntityRegistry.AccessToken)
            {
                var saved = await engine.Registry.SaveCredentialsAsync(created.Value!.Id, type, RestBody.String(credentials!, "credentialsId"),
                    credentials!["credentialsValue"] is JsonObject value ? value.ToJsonString() : RestBody.String(credentials, "credentialsValue"));
                if (!saved.IsOk)
                {
                    // The device without its credentials is not what was asked for.
                    await engine.Registry.DeleteDeviceAsync(created.Value.Id);
                    return TenantEndpoints.RegistryError(saved.Status, saved.Error);
                }
            }

            return Results.Json(EntityJson.Device(created.Value!));
        }).Roles(Authority.TenantAdmin);

        api.MapDelete("/device/{id:guid}", async (Guid id, HttpContext context, PerfEngine engine) =>
        {
            if (Visible(engine, context, id) is null)
            {
                return ApiError.NotFound();
            }

            var result = await engine.Registry.DeleteDeviceAsync(id);
            return result.IsOk ? Results.Ok() : TenantEndpoints.RegistryError(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/tenant/devices", (HttpContext context, PerfEngine engine, string? deviceName, int? pageSize, int? page,
            string? textSearch, string? sortProperty, string? sortOrder, string? type) =>
        {
            var user = JwtAuthFilter.GetUser(context);
            if (deviceName is not null)
            {
                return engine.Registry.FindDeviceByName(user.TenantId, deviceName) is { } d
                    ? Results.Json(EntityJson.Device(d))
                    : ApiError.NotFound($"Device with name '{deviceName}' wasn't found");
            }

            if (pageSize is null or <= 0)
            {
                return ApiError.BadRequest("'pageSize' is required and must be positive");
            }

            if (page is < 0)
            {
                return ApiError.BadRequest("'page' must be zero or more");
            }

            var result = engine.Registry.ListDevices(user.TenantId, null, pageSize.Value, page ?? 0, textSearch, sortProperty,
                !string.Equals(sortOrder, "DESC", StringComparison.OrdinalIgnoreCase), type);
            return Results.Json(EntityJson.Page(result, d => EntityJson.Device(d)));
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/tenant/deviceInfos", (HttpContext context, PerfEngine engine, int? pageSize, int? page,
            string? textSearch, string? sortProperty, string? sortOrder, string? type) =>
            InfoPage(engine, JwtAuthFilter.GetUser(context).TenantId, null, pageSize, page, textSearch, sortProperty, sortOrder, type))
            .Roles(Authority.TenantAdmin);

        api.MapGet("/customer/{customerId:guid}/deviceInfos", (Guid customerId, HttpContext context, PerfEngine engine, int? pageSize, int? page,
            string? textSearch, string? sortProperty, string? sortOrder, string? type) =>
            engine.Registry.GetCustomer(customerId) is { } customer && Access.CanSee(JwtAuthFilter.GetUser(context), customer)
                ? InfoPage(engine, customer.TenantId, customerId, pageSize, page, textSearch, sortProperty, sortOrder, type)
                : ApiError.NotFound())
            .Roles(Authority.TenantAdmin, Authority.CustomerUser);

        api.MapGet("/customer/{customerId:guid}/devices", (Guid customerId, HttpContext context, PerfEngine engine, int? pageSize, int? page,
            string? textSearch, string? sortProperty, string? sortOrder, string? type) =>
        {
            var user = JwtAuthFilter.GetUser(context);
            if (engine.Registry.GetCustomer(customerId) is not { } customer || !Access.CanSee(user, customer))
            {
                return ApiError.NotFound();
            }

            if (pageSize is null or <= 0)
            {
                return ApiError.BadRequest("'pageSize' is required and must be positive");
            }

            if (page is < 0)
            {
                return ApiError.BadRequest("'page' must be zero or more");
            }

            var result = engine.Registry.ListDevices(user.TenantId, customerId, pageSize.Value, page ?? 0, textSearch, sortProperty,
                !string.Equals(sortOrder, "DESC", StringComparison.OrdinalIgnoreCase), type);
            return Results.Json(EntityJson.Page(result, d => EntityJson.Device(d)));
        }).Roles(Authority.TenantAdmin, Authority.CustomerUser);

        api.MapGet("/device/{id:guid}/credentials", (Guid id, HttpContext context, PerfEngine engine) =>
            Visible(engine, context, id) is not null && engine.Registry.GetCredentials(id) is { } credentials
                ? Results.Json(EntityJson.Credentials(credentials))
                : ApiError.NotFound());

        api.MapPost("/device/credentials", async (HttpContext context, PerfEngine engine) =>
        {
            var (body, error) = await RestBody.ReadObjectAsync(context.Request);
            if (error is not null)
            {
                return error;
            }

            if (EntityJson.ReadId(body!["deviceId"]) is not { } deviceId || Visible(engine, context, deviceId) is null)
            {
                return ApiError.NotFound("Device of the credentials wasn't found");
            }

            // ACCESS_TOKEN: credentialsId is the token. X509_CERTIFICATE: credentialsValue is the device's certificate
            // in PEM; the answer's credentialsId is the reference's SHA3-256 of it. MQTT_BASIC: credentialsValue is the
            // reference's JSON {"clientId","userName","password"}, as a string (or an object). The type, and a token's
            // id, are required, as the reference's DeviceCredentialsServiceImpl validates.
            if (RestBody.String(body, "credentialsType") is not { Length: > 0 } type)
            {
                return ApiError.BadRequest("Device credentials type should be specified");
            }

            var credentialsId = RestBody.String(body, "credentialsId");
            if (type == EntityRegistry.AccessToken && string.IsNullOrWhiteSpace(credentialsId))
            {
                return ApiError.BadRequest("Device credentials id should be specified!");
            }

            var result = await engine.Registry.SaveCredentialsAsync(deviceId, type, credentialsId,
                body!["credentialsValue"] is JsonObject value ? value.ToJsonString() : RestBody.String(body, "credentialsValue"));
            return result.IsOk ? Results.Json(EntityJson.Credentials(result.Value!)) : TenantEndpoints.RegistryError(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapPost("/customer/{customerId:guid}/device/{deviceId:guid}", async (Guid customerId, Guid deviceId, HttpContext context, PerfEngine engine) =>
        {
            if (Visible(engine, context, deviceId) is null)
            {
                return ApiError.NotFound();
            }

            var result = await engine.Registry.AssignDeviceToCustomerAsync(deviceId, customerId);
            return result.IsOk ? Results.Json(EntityJson.Device(result.Value!)) : TenantEndpoints.RegistryError(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapDelete("/customer/device/{deviceId:guid}", async (Guid deviceId, HttpContext context, PerfEngine engine) =>
        {
            if (Visible(engine, context, deviceId) is null)
            {
                return ApiError.NotFound();
            }

            var result = await engine.Registry.UnassignDeviceFromCustomerAsync(deviceId);
            return result.IsOk ? Results.Json(EntityJson.Device(result.Value!)) : TenantEndpoints.RegistryError(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);
    }

    /// <summary>The device when the caller may see it; null (answered as 404) otherwise.</summary>
    private static IResult InfoPage(PerfEngine engine, Guid tenantId, Guid? customerId, int? pageSize, int? page,
        string? textSearch, string? sortProperty, string? sortOrder, string? type)
    {
        if (pageSize is null or <= 0)
        {
            return ApiError.BadRequest("'pageSize' is required and must be positive");
        }

        if (page is < 0)
        {
            return ApiError.BadRequest("'page' must be zero or more");
        }

        var result = engine.Registry.ListDevices(tenantId, customerId, pageSize.Value, page ?? 0, textSearch, sortProperty,
            !string.Equals(sortOrder, "DESC", StringComparison.OrdinalIgnoreCase), type);
        return Results.Json(EntityJson.Page(result, d => Info(engine, d)));
    }

    private static JsonObject Info(PerfEngine engine, Device device) =>
        EntityJson.DeviceInfo(device, device.CustomerId == Guid.Empty ? null : engine.Registry.GetCustomer(device.CustomerId)?.Title,
            engine.Sessions.GetSessions(device.Id).Count > 0);

    public static Device? Visible(PerfEngine engine, HttpContext context, Guid deviceId) =>
        engine.Registry.GetDevice(deviceId) is { } device && Access.CanSee(JwtAuthFilter.GetUser(context), device) ? device : null;
}
