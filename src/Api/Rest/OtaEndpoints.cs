using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>
/// OTA packages in the reference's two-step shape: <c>POST /api/otaPackage</c> announces title and
/// version (answering an info with <c>hasData:false</c>), then <c>POST /api/otaPackage/{id}</c> uploads
/// the bytes as multipart field <c>file</c> (or, simpler for scripts, as the raw request body). A package
/// becomes durable, and assignable, when its bytes arrive; an announced package without bytes lives in
/// memory only and is gone after a restart.
/// </summary>
internal static class OtaEndpoints
{
    /// <summary>Largest package accepted (the HTTP device API's general body limit).</summary>
    private const long MaxPackageBytes = 50L << 20;

    public static void MapOtaEndpoints(this RouteGroupBuilder api)
    {
        api.MapPost("/otaPackage", async (HttpContext context, OtaDrafts drafts, PerfEngine engine) =>
        {
            var user = JwtAuthFilter.GetUser(context);
            var (body, error) = await RestBody.ReadObjectAsync(context.Request);
            if (error is not null)
            {
                return error;
            }

            var title = RestBody.String(body!, "title");
            var version = RestBody.String(body!, "version");
            var type = RestBody.String(body!, "type") ?? "FIRMWARE";
            if (string.IsNullOrWhiteSpace(title) || string.IsNullOrWhiteSpace(version))
            {
                return ApiError.BadRequest("OTA package title and version should be specified!");
            }

            if (type is not ("FIRMWARE" or "SOFTWARE"))
            {
                return ApiError.BadRequest("OTA package type should be FIRMWARE or SOFTWARE");
            }

            if (engine.Registry.FindOtaPackage(user.TenantId, title, version) is not null || drafts.Exists(user.TenantId, title, version))
            {
                return ApiError.BadRequest("OtaPackage with such title and version already exists!");
            }

            var draft = new OtaDraft(Guid.NewGuid(), user.TenantId, title, version, type, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            drafts.Add(draft);
            return Results.Json(Info(draft));
        }).Roles(Authority.TenantAdmin);

        api.MapPost("/otaPackage/{id:guid}", async (Guid id, string? checksumAlgorithm, string? checksum, HttpContext context, OtaDrafts drafts, PerfEngine engine) =>
        {
            var user = JwtAuthFilter.GetUser(context);
            if (!drafts.TryGet(id, out var draft) || draft.TenantId != user.TenantId)
            {
                return engine.Registry.GetOtaPackage(id) is { } existing && existing.TenantId == user.TenantId
                    ? ApiError.BadRequest("OTA package already has data")
                    : ApiError.NotFound();
            }

            if (checksumAlgorithm is not null && !string.Equals(checksumAlgorithm, "SHA256", StringComparison.OrdinalIgnoreCase))
            {
                return ApiError.BadRequest($"checksumAlgorithm '{checksumAlgorithm}' is not supported; use SHA256");
            }

            if (context.Request.ContentLength > MaxPackageBytes)
            {
                return ApiError.TooLarge($"OTA package exceeds {MaxPackageBytes} bytes");
            }

            var (data, fileName, contentType, readError) = await ReadUploadAsync(context.Request);
            if (readError is not null)
            {
                return readError;
            }

            if (data.Length == 0)
            {
                return ApiError.BadRequest("OTA package file is empty");
            }

            if (!string.IsNullOrEmpty(checksum) && !string.Equals(checksum, Convert.ToHexStringLower(SHA256.HashData(data)), StringComparison.OrdinalIgnoreCase))
            {
                return ApiError.BadRequest("Wrong OTA package file checksum!");
            }

            var result = await engine.Registry.CreateOtaPackageAsync(user.TenantId, draft.Title, draft.Version, data, draft.Id);
            if (!result.IsOk)
            {
                return TenantEndpoints.RegistryError(result.Status, result.Error);
            }

            drafts.Remove(id);
            return Results.Json(Info(result.Value!, draft.Type, fileName, contentType));
        }).Roles(Authority.TenantAdmin);

        // As the reference: customer users may list and read package infos of their tenant; the package
        // itself and its bytes are for the tenant administrator.
        api.MapGet("/otaPackage/{id:guid}", (Guid id, HttpContext context, OtaDrafts drafts, PerfEngine engine) => GetInfo(id, context, drafts, engine))
            .Roles(Authority.TenantAdmin);
        api.MapGet("/otaPackage/info/{id:guid}", (Guid id, HttpContext context, OtaDrafts drafts, PerfEngine engine) => GetInfo(id, context, drafts, engine))
            .Roles(Authority.TenantAdmin, Authority.CustomerUser);

        api.MapGet("/otaPackages", (int? pageSize, int? page, HttpContext context, OtaDrafts drafts, PerfEngine engine) =>
        {
            if (pageSize is null or <= 0)
            {
                return ApiError.BadRequest("'pageSize' is required and must be positive");
            }

            var user = JwtAuthFilter.GetUser(context);
            var all = engine.Registry.ListOtaPackages(user.TenantId).Select(p => (p.CreatedTime, Info: Info(p, drafts.TypeOf(p.Id))))
                .Concat(drafts.List(user.TenantId).Select(d => (d.CreatedTime, Info: Info(d))))
                .OrderByDescending(x => x.CreatedTime)
                .Select(x => x.Info)
                .ToList();
            return Results.Json(EntityJson.Page(EntityJson.PageOf(all, pageSize.Value, page ?? 0), i => i));
        }).Roles(Authority.TenantAdmin, Authority.CustomerUser);

        api.MapGet("/otaPackage/{id:guid}/download", (Guid id, HttpContext context, PerfEngine engine) =>
        {
            var user = JwtAuthFilter.GetUser(context);
            if (engine.Registry.GetOtaPackage(id) is not { } package || package.TenantId != user.TenantId)
            {
                return ApiError.NotFound();
            }

            var data = engine.Registry.ReadOtaChunk(id, (int)package.Size, 0);
            return Results.File(data, "application/octet-stream", $"{package.Title}-{package.Version}.bin");
        }).Roles(Authority.TenantAdmin);

        api.MapPost("/device/{deviceId:guid}/firmware/{otaId:guid}", async (Guid deviceId, Guid otaId, HttpContext context, PerfEngine engine) =>
            await AssignAsync(deviceId, otaId, context, engine)).Roles(Authority.TenantAdmin);

        api.MapDelete("/device/{deviceId:guid}/firmware", async (Guid deviceId, HttpContext context, PerfEngine engine) =>
            await AssignAsync(deviceId, null, context, engine)).Roles(Authority.TenantAdmin);
    }

    /// <summary>Assigns (or with null clears) a device's firmware; the core publishes the fw_* shared attributes.</summary>
    public static async Task<IResult> AssignAsync(Guid deviceId, Guid? otaId, HttpContext context, PerfEngine engine)
    {
        if (DeviceEndpoints.Visible(engine, context, deviceId) is null)
        {
            return ApiError.NotFound();
        }

        if (otaId is { } id && (engine.Registry.GetOtaPackage(id) is not { } package || package.TenantId != JwtAuthFilter.GetUser(context).TenantId))
        {
            return ApiError.BadRequest("OTA package with data wasn't found; upload its file first");
        }

        var result = await engine.AssignFirmwareAsync(deviceId, otaId);
        return result.IsOk ? Results.Json(EntityJson.Device(result.Value!)) : TenantEndpoints.RegistryError(result.Status, result.Error);
    }

    private static IResult GetInfo(Guid id, HttpContext context, OtaDrafts drafts, PerfEngine engine)
    {
        var user = JwtAuthFilter.GetUser(context);
        if (engine.Registry.GetOtaPackage(id) is { } package && package.TenantId == user.TenantId)
        {
            return Results.Json(Info(package, drafts.TypeOf(id)));
        }

        return drafts.TryGet(id, out var draft) && draft.TenantId == user.TenantId ? Results.Json(Info(draft)) : ApiError.NotFound();
    }

    private static async Task<(byte[] Data, string? FileName, string? ContentType, IResult? Error)> ReadUploadAsync(HttpRequest request)
    {
        if (request.HasFormContentType)
        {
            var form = await request.ReadFormAsync(request.HttpContext.RequestAborted);
            var file = form.Files["file"] ?? (form.Files.Count > 0 ? form.Files[0] : null);
            if (file is null)
            {
                return ([], null, null, ApiError.BadRequest("multipart field 'file' is required"));
            }

            if (file.Length > MaxPackageBytes)
            {
                return ([], null, null, ApiError.TooLarge($"OTA package exceeds {MaxPackageBytes} bytes"));
            }

            using var buffer = new MemoryStream((int)file.Length);
            await file.CopyToAsync(buffer, request.HttpContext.RequestAborted);
            return (buffer.ToArray(), file.FileName, file.ContentType, null);
        }

        using var raw = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, request.HttpContext.RequestAborted)) > 0)
        {
            if (raw.Length + read > MaxPackageBytes)
            {
                return ([], null, null, ApiError.TooLarge($"OTA package exceeds {MaxPackageBytes} bytes"));
            }

            raw.Write(chunk, 0, read);
        }

        return (raw.ToArray(), null, request.ContentType, null);
    }

    private static JsonObject Info(OtaPackage p, string type = "FIRMWARE", string? fileName = null, string? contentType = null) => new()
    {
        ["id"] = EntityJson.Id("OTA_PACKAGE", p.Id),
        ["createdTime"] = p.CreatedTime,
        ["tenantId"] = EntityJson.Id("TENANT", p.TenantId),
        ["type"] = type,
        ["title"] = p.Title,
        ["version"] = p.Version,
        ["hasData"] = true,
        ["fileName"] = fileName ?? $"{p.Title}-{p.Version}.bin",
        ["contentType"] = contentType ?? "application/octet-stream",
        ["checksumAlgorithm"] = p.ChecksumAlgorithm,
        ["checksum"] = p.Checksum,
        ["dataSize"] = p.Size,
        ["additionalInfo"] = new JsonObject(),
    };

    private static JsonObject Info(OtaDraft d) => new()
    {
        ["id"] = EntityJson.Id("OTA_PACKAGE", d.Id),
        ["createdTime"] = d.CreatedTime,
        ["tenantId"] = EntityJson.Id("TENANT", d.TenantId),
        ["type"] = d.Type,
        ["title"] = d.Title,
        ["version"] = d.Version,
        ["hasData"] = false,
        ["fileName"] = null,
        ["contentType"] = null,
        ["checksumAlgorithm"] = null,
        ["checksum"] = null,
        ["dataSize"] = null,
        ["additionalInfo"] = new JsonObject(),
    };
}

/// <summary>An announced OTA package still waiting for its bytes.</summary>
internal sealed record OtaDraft(Guid Id, Guid TenantId, string Title, string Version, string Type, long CreatedTime);

/// <summary>Announced packages without data (memory only), and the type of uploaded SOFTWARE packages.</summary>
internal sealed class OtaDrafts
{
    private readonly ConcurrentDictionary<Guid, OtaDraft> _drafts = new();
    private readonly ConcurrentDictionary<Guid, string> _types = new();

    public void Add(OtaDraft draft) => _drafts[draft.Id] = draft;

    public bool TryGet(Guid id, out OtaDraft draft) => _drafts.TryGetValue(id, out draft!);

    public void Remove(Guid id)
    {
        if (_drafts.TryRemove(id, out var draft) && draft.Type != "FIRMWARE")
        {
            _types[id] = draft.Type;
        }
    }

    public bool Exists(Guid tenantId, string title, string version) =>
        _drafts.Values.Any(d => d.TenantId == tenantId && d.Title == title && d.Version == version);

    public IEnumerable<OtaDraft> List(Guid tenantId) => _drafts.Values.Where(d => d.TenantId == tenantId);

    public string TypeOf(Guid id) => _types.GetValueOrDefault(id, "FIRMWARE");
}
