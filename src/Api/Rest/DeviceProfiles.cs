using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>
/// Device profiles as the SDKs and the reference's UI need them. Every tenant has one profile, the reference's
/// "default" (DEFAULT type and transport, no provisioning), which every device of the tenant has; its id is derived
/// from the tenant's, so it is the same on every start with nothing stored. The SDKs require a device's
/// <c>deviceProfileId</c> (tb-rest-client's Device model refuses a device without one) and look the default profile up
/// before they create a device.
/// </summary>
public static class DeviceProfiles
{
    public const string DefaultName = "default";

    /// <summary>A name-based UUID (RFC 9562 version 8, from SHA-256) of the tenant's id: the tenant's default profile.</summary>
    public static Guid DefaultId(Guid tenantId)
    {
        Span<byte> input = stackalloc byte[16 + 22];
        tenantId.TryWriteBytes(input);
        "default-device-profile"u8.CopyTo(input[16..]);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(input, hash);
        hash[6] = (byte)((hash[6] & 0x0F) | 0x80);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash[..16], bigEndian: true);
    }

    public static JsonObject DefaultDeviceData() => new()
    {
        ["configuration"] = new JsonObject { ["type"] = "DEFAULT" },
        ["transportConfiguration"] = new JsonObject { ["type"] = "DEFAULT" },
    };

    /// <summary>The reference's DeviceProfileInfo.</summary>
    public static JsonObject Info(Guid tenantId) => new()
    {
        ["id"] = EntityJson.Id("DEVICE_PROFILE", DefaultId(tenantId)),
        ["tenantId"] = EntityJson.Id("TENANT", tenantId),
        ["name"] = DefaultName,
        ["image"] = null,
        ["defaultDashboardId"] = null,
        ["type"] = "DEFAULT",
        ["transportType"] = "DEFAULT",
    };

    /// <summary>The reference's DeviceProfile.</summary>
    public static JsonObject Profile(Tenant tenant) => new()
    {
        ["id"] = EntityJson.Id("DEVICE_PROFILE", DefaultId(tenant.Id)),
        ["createdTime"] = tenant.CreatedTime,
        ["tenantId"] = EntityJson.Id("TENANT", tenant.Id),
        ["name"] = DefaultName,
        ["description"] = "Default device profile",
        ["image"] = null,
        ["type"] = "DEFAULT",
        ["transportType"] = "DEFAULT",
        ["provisionType"] = "DISABLED",
        ["defaultRuleChainId"] = null,
        ["defaultDashboardId"] = null,
        ["defaultQueueName"] = null,
        ["provisionDeviceKey"] = null,
        ["firmwareId"] = null,
        ["softwareId"] = null,
        ["defaultEdgeRuleChainId"] = null,
        ["default"] = true,
        ["profileData"] = new JsonObject
        {
            ["configuration"] = new JsonObject { ["type"] = "DEFAULT" },
            ["transportConfiguration"] = new JsonObject { ["type"] = "DEFAULT" },
            ["provisionConfiguration"] = new JsonObject { ["type"] = "DISABLED", ["provisionDeviceSecret"] = null },
            ["alarms"] = null,
        },
    };

    internal static void MapDeviceProfileEndpoints(this RouteGroupBuilder api)
    {
        api.MapGet("/deviceProfileInfo/default", (HttpContext context) => Results.Json(Info(JwtAuthFilter.GetUser(context).TenantId)))
            .Roles(Authority.TenantAdmin, Authority.CustomerUser);

        api.MapGet("/deviceProfileInfo/{id:guid}", (Guid id, HttpContext context) =>
            id == DefaultId(JwtAuthFilter.GetUser(context).TenantId) ? Results.Json(Info(JwtAuthFilter.GetUser(context).TenantId)) : ApiError.NotFound())
            .Roles(Authority.TenantAdmin, Authority.CustomerUser);

        api.MapGet("/deviceProfile/{id:guid}", (Guid id, HttpContext context, PerfEngine engine) =>
            engine.Registry.GetTenant(JwtAuthFilter.GetUser(context).TenantId) is { } tenant && id == DefaultId(tenant.Id)
                ? Results.Json(Profile(tenant))
                : ApiError.NotFound())
            .Roles(Authority.TenantAdmin);

        api.MapGet("/deviceProfiles", (HttpContext context, PerfEngine engine, int? pageSize, int? page) =>
            engine.Registry.GetTenant(JwtAuthFilter.GetUser(context).TenantId) is { } tenant
                ? Results.Json(EntityJson.Page(EntityJson.PageOf([tenant], pageSize ?? 100, page ?? 0), Profile))
                : ApiError.NotFound())
            .Roles(Authority.TenantAdmin);

        api.MapGet("/deviceProfileInfos", (HttpContext context, int? pageSize, int? page) =>
            Results.Json(EntityJson.Page(EntityJson.PageOf([JwtAuthFilter.GetUser(context).TenantId], pageSize ?? 100, page ?? 0), Info)))
            .Roles(Authority.TenantAdmin, Authority.CustomerUser);
    }
}
