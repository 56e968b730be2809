using System.Text.Json;
using System.Text.Json.Nodes;
using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>The reference platform's JSON shapes for entities (ids as {"entityType","id"}).</summary>
public static class EntityJson
{
    /// <summary>The reference's NULL_UID: the customer id of an unassigned entity.</summary>
    public static readonly Guid NullUid = Guid.Parse("13814000-1dd2-11b2-8080-808080808080");

    public static JsonObject Id(string entityType, Guid id) => new()
    {
        ["entityType"] = entityType,
        ["id"] = (id == Guid.Empty ? NullUid : id).ToString(),
    };

    /// <summary>Reads <c>{"id":"uuid"}</c> or a bare uuid string; NULL_UID maps to <see cref="Guid.Empty"/>.</summary>
    public static Guid? ReadId(JsonNode? node)
    {
        var text = node switch
        {
            JsonObject o => o["id"]?.GetValue<string>(),
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            _ => null,
        };
        if (text is null || !Guid.TryParse(text, out var id))
        {
            return null;
        }

        return FromNullUid(id);
    }

    /// <summary>A comma-separated list of ids (the reference's <c>deviceIds</c>, <c>edgeIds</c>); false with the first that is not a UUID.</summary>
    public static bool TryReadIds(string? csv, out List<Guid> ids, out string? invalid)
    {
        ids = [];
        invalid = null;
        foreach (var text in KvJson.Keys(csv) ?? [])
        {
            if (!Guid.TryParse(text, out var id))
            {
                invalid = text;
                return false;
            }

            ids.Add(id);
        }

        return true;
    }

    /// <summary>The reference's NULL_UUID as no id (<see cref="Guid.Empty"/>); any other id as itself.</summary>
    public static Guid FromNullUid(Guid id) => id == NullUid ? Guid.Empty : id;

    public static JsonObject Device(Device device, string? customerTitle = null)
    {
        JsonNode? info = null;
        if (!string.IsNullOrEmpty(device.AdditionalInfoJson))
        {
            try
            {
                info = JsonNode.Parse(device.AdditionalInfoJson);
            }
            catch (JsonException)
            {
                info = null;
            }
        }

        info ??= new JsonObject { ["gateway"] = device.IsGateway };
        return new JsonObject
        {
            ["id"] = Id("DEVICE", device.Id),
            ["createdTime"] = device.CreatedTime,
            ["tenantId"] = Id("TENANT", device.TenantId),
            ["customerId"] = Id("CUSTOMER", device.CustomerId),
            ["name"] = device.Name,
            ["type"] = device.Type,
            ["label"] = device.Label,
            ["customerTitle"] = customerTitle,
            ["additionalInfo"] = info,
            ["deviceProfileId"] = Id("DEVICE_PROFILE", DeviceProfiles.DefaultId(device.TenantId)),
            ["deviceData"] = DeviceProfiles.DefaultDeviceData(),
            ["firmwareId"] = device.FirmwareId is { } fw ? Id("OTA_PACKAGE", fw) : null,
            ["softwareId"] = null,
        };
    }

    /// <summary>
    /// The reference's DeviceInfo: the device with its customer's title, its profile's name and whether a session
    /// of it is open.
    /// </summary>
    public static JsonObject DeviceInfo(Device device, string? customerTitle, bool active)
    {
        var info = Device(device, customerTitle);
        info["customerIsPublic"] = false;
        info["deviceProfileName"] = DeviceProfiles.DefaultName;
        info["active"] = active;
        return info;
    }

    public static JsonObject Credentials(DeviceCredentials credentials) => new()
    {
        ["id"] = new JsonObject { ["id"] = credentials.DeviceId.ToString() },
        ["deviceId"] = Id("DEVICE", credentials.DeviceId),
        ["credentialsType"] = credentials.CredentialsType,
        ["credentialsId"] = credentials.CredentialsId,
        ["credentialsValue"] = credentials.CredentialsValue,
    };

    /// <summary>The reference's contact fields (ContactBased) and additionalInfo: what a tenant or customer keeps besides its title.</summary>
    public static readonly string[] ContactFields = ["country", "state", "city", "address", "address2", "zip", "phone", "email", "additionalInfo"];

    /// <summary>What a user keeps besides its e-mail and names.</summary>
    public static readonly string[] UserFields = ["phone", "additionalInfo"];

    /// <summary>The members of <paramref name="body"/> named in <paramref name="fields"/> that are not null, as one JSON object; null when none.</summary>
    public static string? ReadDetails(JsonObject body, string[] fields)
    {
        var details = new JsonObject();
        foreach (var name in fields)
        {
            if (body[name] is { } value)
            {
                details[name] = value.DeepClone();
            }
        }

        return details.Count == 0 ? null : details.ToJsonString();
    }

    public static JsonObject Tenant(Tenant tenant) => WithDetails(new JsonObject
    {
        ["id"] = Id("TENANT", tenant.Id),
        ["createdTime"] = tenant.CreatedTime,
        ["title"] = tenant.Title,
        ["name"] = tenant.Title,
    }, tenant.DetailsJson, ContactFields);

    public static JsonObject Customer(Customer customer) => WithDetails(new JsonObject
    {
        ["id"] = Id("CUSTOMER", customer.Id),
        ["createdTime"] = customer.CreatedTime,
        ["tenantId"] = Id("TENANT", customer.TenantId),
        ["title"] = customer.Title,
        ["name"] = customer.Title,
    }, customer.DetailsJson, ContactFields);

    public static JsonObject User(User user) => WithDetails(new JsonObject
    {
        ["id"] = Id("USER", user.Id),
        ["createdTime"] = user.CreatedTime,
        ["tenantId"] = Id("TENANT", user.TenantId),
        ["customerId"] = Id("CUSTOMER", user.CustomerId),
        ["email"] = user.Email,
        ["name"] = user.Email,
        ["authority"] = JwtService.AuthorityName(user.Authority),
        ["firstName"] = user.FirstName,
        ["lastName"] = user.LastName,
    }, user.DetailsJson, UserFields);

    /// <summary>Adds every field of <paramref name="fields"/>: its saved value, or null as the reference shows an unset one.</summary>
    private static JsonObject WithDetails(JsonObject entity, string? detailsJson, string[] fields)
    {
        var details = detailsJson is null ? null : JsonNode.Parse(detailsJson) as JsonObject;
        foreach (var name in fields)
        {
            entity[name] = details?[name]?.DeepClone();
        }

        return entity;
    }

    public static JsonObject Page<T>(Perf.Core.PageResult<T> page, Func<T, JsonNode> map)
    {
        var data = new JsonArray();
        foreach (var item in page.Data)
        {
            data.Add(map(item));
        }

        return new JsonObject
        {
            ["data"] = data,
            ["totalPages"] = page.TotalPages,
            ["totalElements"] = page.TotalElements,
            ["hasNext"] = page.HasNext,
        };
    }

    /// <summary>Pages an in-memory list the way the reference pages (page is zero-based).</summary>
    public static Perf.Core.PageResult<T> PageOf<T>(IReadOnlyList<T> all, int pageSize, int page)
    {
        pageSize = Math.Max(1, pageSize);
        page = Math.Max(0, page);
        var data = all.Skip(page * pageSize).Take(pageSize).ToArray();
        var totalPages = (all.Count + pageSize - 1) / pageSize;
        return new Perf.Core.PageResult<T>(data, totalPages, all.Count, (page + 1) * pageSize < all.Count);
    }
}
