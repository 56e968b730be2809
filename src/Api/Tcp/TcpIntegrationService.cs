using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Perf.Api.Hosting;
using Perf.Api.Rest;
using Perf.Core;
using Perf.Kestrel.Tcp;

namespace Perf.Api.Tcp;

/// <summary>A converter entity: the reference's JSON as saved, and its parsed configuration.</summary>
internal sealed record ConverterEntity(Guid Id, Guid TenantId, bool IsUplink, JsonObject Json, TcpConverterConfiguration Configuration)
{
    public string Name => Json["name"]?.GetValue<string>() ?? string.Empty;
}

/// <summary>An integration entity: its saved JSON and, once compiled, the running integration and its listener.</summary>
internal sealed class IntegrationEntity(Guid id, Guid tenantId, JsonObject json)
{
    public Guid Id { get; } = id;
    public Guid TenantId { get; } = tenantId;
    public JsonObject Json { get; internal set; } = json;
    public TcpIntegration? Integration { get; internal set; }
    internal TcpIntegrationListener? Listener { get; set; }

    /// <summary>Why the integration is not listening although enabled (bind failure at start), or null.</summary>
    public string? LastError { get; internal set; }

    public string Name => Json["name"]?.GetValue<string>() ?? string.Empty;

    public IPEndPoint? BoundEndPoint => Listener?.EndPoint;

    public Guid? UplinkConverterId => EntityJson.ReadId(Json["defaultConverterId"]);

    public Guid? DownlinkConverterId => EntityJson.ReadId(Json["downlinkConverterId"]);
}

/// <summary>The outcome of a REST operation on converters or integrations: a value, or a status and a message.</summary>
internal readonly record struct IntegrationResult<T>(T? Value, int Status, string? Error)
{
    public static IntegrationResult<T> Ok(T value) => new(value, 200, null);
    public static IntegrationResult<T> Fail(int status, string error) => new(default, status, error);
}

/// <summary>
/// Converters and integrations created over REST (the reference's <c>/api/converter</c>, <c>/api/integration</c>):
/// validated (scripts compiled) before they are saved, stored by <see cref="IntegrationStore"/>, and each enabled
/// integration served by its own <see cref="TcpIntegrationListener"/> on its port. The default integration of the
/// configuration runs on the host's Kestrel and is not managed here. Mutations are serialized; reads are lock-free.
/// </summary>
internal sealed class TcpIntegrationService(
    PerfEngine engine,
    CoreTcpUplinkSink sink,
    HostSettings settings,
    IServiceProvider services,
    ILogger<TcpIntegrationService> logger) : IHostedService
{
    private readonly ConcurrentDictionary<Guid, ConverterEntity> _converters = new();
    private readonly ConcurrentDictionary<Guid, IntegrationEntity> _integrations = new();
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly IntegrationStore _store = new(settings.DataDir);

    // ------------------------------------------------------------------ converters

    public ConverterEntity? GetConverter(Guid tenantId, Guid id) =>
        _converters.TryGetValue(id, out var c) && c.TenantId == tenantId ? c : null;

    public IReadOnlyList<ConverterEntity> ListConverters(Guid tenantId) =>
        [.. _converters.Values.Where(c => c.TenantId == tenantId).OrderBy(c => c.Json["createdTime"]?.GetValue<long>() ?? 0)];

    public async Task<IntegrationResult<ConverterEntity>> SaveConverterAsync(Guid tenantId, JsonObject body)
    {
        var parsed = ParseConverter(body);
        if (parsed.Error is not null)
        {
            return IntegrationResult<ConverterEntity>.Fail(400, parsed.Error);
        }

        await _gate.WaitAsync();
        try
        {
            ConverterEntity? existing = null;
            if (EntityJson.ReadId(body["id"]) is { } id && id != Guid.Empty)
            {
                existing = GetConverter(tenantId, id);
                if (existing is null)
                {
                    return IntegrationResult<ConverterEntity>.Fail(404, "Requested item wasn't found!");
                }
            }

            if (existing is not null && existing.IsUplink != parsed.IsUplink && IsReferenced(existing.Id))
            {
                return IntegrationResult<ConverterEntity>.Fail(400, "The type of a converter used by an integration cannot be changed");
            }

            var json = (JsonObject)body.DeepClone();
            var newId = existing?.Id ?? Guid.NewGuid();
            json["id"] = EntityJson.Id("CONVERTER", newId);
            json["createdTime"] = existing?.Json["createdTime"]?.GetValue<long>() ?? DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            json["tenantId"] = EntityJson.Id("TENANT", tenantId);
            json["type"] = parsed.IsUplink ? "UPLINK" : "DOWNLINK";
            var entity = new ConverterEntity(newId, tenantId, parsed.IsUplink, json, parsed.Configuration!);
            _store.Save(IntegrationStore.Converter, newId, json);
            _converters[newId] = entity;

            // Integrations using the converter are recompiled; new connections use the new script.
            foreach (var integration in _integrations.Values.Where(i => i.UplinkConverterId == newId || i.DownlinkConverterId == newId))
            {
                if (Compile(integration.Json, tenantId) is { Options: { } options })
                {
                    await ApplyAsync(integration, options);
                }
            }

            return IntegrationResult<ConverterEntity>.Ok(entity);
        }
        finally
        {
            _gate.Release();
        }
    }

    public async Task<IntegrationResult<bool>> DeleteConverterAsync(Guid tenantId, Guid id)
    {
        await _gate.WaitAsync();
        try
        {
            if (GetConverter(tenantId, id) is null)
            {
                return IntegrationResult<bool>.Fail(404, "Requested item wasn't found!");
            }

            if (IsReferenced(id))
            {
                return IntegrationResult<bool>.Fail(400, "The converter referenced by an integration cannot be deleted!");
            }

            _store.Delete(IntegrationStore.Converter, id);
            _converters.TryRemove(id, out _);
            return IntegrationResult<bool>.Ok(true);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The events of a converter across the integrations that use it, newest first.</summary>
    public IReadOnlyList<ConverterEvent> ConverterEvents(ConverterEntity converter) =>
        [.. _integrations.Values
            .Where(i => i.TenantId == converter.TenantId && i.Integration is not null &&
                        (converter.IsUplink ? i.UplinkConverterId == converter.Id : i.DownlinkConverterId == converter.Id))
            .SelectMany(i => (converter.IsUplink ? i.Integration!.UplinkEvents : i.Integration!.DownlinkEvents).Snapshot())
            .OrderByDescending(e => e.Ts)];

    // ------------------------------------------------------------------ integrations

    public IntegrationEntity? GetIntegration(Guid tenantId, Guid id) =>
        _integrations.TryGetValue(id, out var i) && i.TenantId == tenantId ? i : null;

    public IReadOnlyList<IntegrationEntity> ListIntegrations(Guid tenantId) =>
        [.. _integrations.Values.Where(i => i.TenantId == tenantId).OrderBy(i => i.Json["createdTime"]?.GetValue<long>() ?? 0)];

    /// <summary>Creates (no id) or updates (id) an integration; an enabled one is listening when this returns.</summary>
    public async Task<IntegrationResult<IntegrationEntity>> SaveIntegrationAsync(Guid tenantId, JsonObject body)
    {
        var compiled = Compile(body, tenantId);
        if (compiled.Error is not null)
        {
            return IntegrationResult<IntegrationEntity>.Fail(400, compiled.Error);
        }

        await _gate.WaitAsync();
        try
        {
            IntegrationEntity? existing = null;
            if (EntityJson.ReadId(body["id"]) is { } id && id != Guid.Empty)
            {
                existing = GetIntegration(tenantId, id);
                if (existing is null)
                {
                    return IntegrationResult<IntegrationEntity>.Fail(404, "Requested item wasn't found!");
                }
            }

            var json = (JsonObject)body.DeepClone();
            var entity = existing ?? new IntegrationEntity(Guid.NewGuid(), tenantId, json);
            json["id"] = EntityJson.Id("INTEGRATION", entity.Id);
            json["createdTime"] = existing?.Json["createdTime"]?.GetValue<long>() ?? DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            json["tenantId"] = EntityJson.Id("TENANT", tenantId);
            json["type"] = "TCP";
            json["enabled"] = compiled.Options!.Enabled;
            json.Remove("status"); // rendered, not configuration: a GET answer posted back as an update
            if (await ApplyAsync(entity, compiled.Options!) is { } bindError)
            {
                return IntegrationResult<IntegrationEntity>.Fail(400, bindError);
            }

            entity.Json = json;
            _store.Save(IntegrationStore.Integration, entity.Id, json);
            _integrations[entity.Id] = entity;
            return IntegrationResult<IntegrationEntity>.Ok(entity);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Enables or disables an integration (starts or stops its listener).</summary>
    public Task<IntegrationResult<IntegrationEntity>> SetEnabledAsync(Guid tenantId, Guid id, bool enabled)
    {
        if (GetIntegration(tenantId, id) is not { } entity)
        {
            return Task.FromResult(IntegrationResult<IntegrationEntity>.Fail(404, "Requested item wasn't found!"));
        }

        var body = (JsonObject)entity.Json.DeepClone();
        body["enabled"] = enabled;
        return SaveIntegrationAsync(tenantId, body);
    }

    public async Task<IntegrationResult<bool>> DeleteIntegrationAsync(Guid tenantId, Guid id)
    {
        await _gate.WaitAsync();
        try
        {
            if (GetIntegration(tenantId, id) is not { } entity)
            {
                return IntegrationResult<bool>.Fail(404, "Requested item wasn't found!");
            }

            await StopListenerAsync(entity);
            _store.Delete(IntegrationStore.Integration, id);
            _integrations.TryRemove(id, out _);
            return IntegrationResult<bool>.Ok(true);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The reference's integration JSON with <c>configuration.clientConfiguration.port</c> as bound (port 0 resolved).</summary>
    public static JsonObject Render(IntegrationEntity entity)
    {
        var json = (JsonObject)entity.Json.DeepClone();
        if (entity.BoundEndPoint is { } bound &&
            json["configuration"] is JsonObject configuration &&
            configuration["clientConfiguration"] is JsonObject client)
        {
            client["port"] = bound.Port;
        }

        json["status"] = new JsonObject
        {
            ["listening"] = entity.BoundEndPoint is not null,
            ["port"] = entity.BoundEndPoint?.Port,
            ["error"] = entity.LastError,
        };
        return json;
    }

    // ------------------------------------------------------------------ lifecycle

    /// <summary>
    /// A deleted tenant's integrations stop and go, with its converters (raised on the commit loop: the work runs
    /// after it). Its TCP ports are freed for other tenants.
    /// </summary>
    private void OnTenantRemoved(Guid tenantId) => _ = Task.Run(async () =>
    {
        await _gate.WaitAsync();
        try
        {
            foreach (var entity in _integrations.Values.Where(i => i.TenantId == tenantId).ToArray())
            {
                await StopListenerAsync(entity);
                _store.Delete(IntegrationStore.Integration, entity.Id);
                _integrations.TryRemove(entity.Id, out _);
            }

            foreach (var converter in _converters.Values.Where(c => c.TenantId == tenantId).ToArray())
            {
                _store.Delete(IntegrationStore.Converter, converter.Id);
                _converters.TryRemove(converter.Id, out _);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TcpHostLog.IntegrationFailed(logger, "of deleted tenant " + tenantId, tenantId, e.Message);
        }
        finally
        {
            _gate.Release();
        }
    });

    /// <summary>Loads the stored entities and starts every enabled integration; one that cannot bind is logged and left stopped.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        engine.Registry.TenantRemoved += OnTenantRemoved;
        foreach (var (file, json, error) in _store.Load(IntegrationStore.Converter))
        {
            if (json is null || EntityJson.ReadId(json["id"]) is not { } id || EntityJson.ReadId(json["tenantId"]) is not { } tenantId ||
                ParseConverter(json) is not { Error: null } parsed)
            {
                TcpHostLog.StoredEntitySkipped(logger, file, error ?? "not a converter entity");
                continue;
            }

            if (DeletedWithItsTenant(IntegrationStore.Converter, id, tenantId))
            {
                continue;
            }

            _converters[id] = new ConverterEntity(id, tenantId, parsed.IsUplink, json, parsed.Configuration!);
        }

        foreach (var (file, json, error) in _store.Load(IntegrationStore.Integration))
        {
            if (json is null || EntityJson.ReadId(json["id"]) is not { } id || EntityJson.ReadId(json["tenantId"]) is not { } tenantId)
            {
                TcpHostLog.StoredEntitySkipped(logger, file, error ?? "not an integration entity");
                continue;
            }

            if (DeletedWithItsTenant(IntegrationStore.Integration, id, tenantId))
            {
                continue;
            }

            var entity = new IntegrationEntity(id, tenantId, json);
            _integrations[id] = entity;
            var compiled = Compile(json, tenantId);
            if (compiled.Error is not null)
            {
                entity.LastError = compiled.Error;
                TcpHostLog.IntegrationFailed(logger, entity.Name, id, compiled.Error);
                continue;
            }

            await ApplyAsync(entity, compiled.Options!, cancellationToken);
        }
    }

    /// <summary>
    /// At load: a stored entity of a tenant that no longer exists (deleted before the process ended, after this was
    /// stored) is deleted, and true.
    /// </summary>
    private bool DeletedWithItsTenant(string kind, Guid id, Guid tenantId)
    {
        if (engine.Registry.GetTenant(tenantId) is not null)
        {
            return false;
        }

        _store.Delete(kind, id);
        return true;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        engine.Registry.TenantRemoved -= OnTenantRemoved;
        foreach (var entity in _integrations.Values)
        {
            await StopListenerAsync(entity);
        }
    }

    // ------------------------------------------------------------------ internals

    private bool IsReferenced(Guid converterId) =>
        _integrations.Values.Any(i => i.UplinkConverterId == converterId || i.DownlinkConverterId == converterId);

    private static (bool IsUplink, TcpConverterConfiguration? Configuration, string? Error) ParseConverter(JsonObject body)
    {
        if (string.IsNullOrWhiteSpace(RestBody.String(body, "name")))
        {
            return (false, null, "Converter name should be specified!");
        }

        var type = RestBody.String(body, "type");
        bool isUplink;
        if (string.Equals(type, "UPLINK", StringComparison.OrdinalIgnoreCase))
        {
            isUplink = true;
        }
        else if (string.Equals(type, "DOWNLINK", StringComparison.OrdinalIgnoreCase))
        {
            isUplink = false;
        }
        else
        {
            return (false, null, "Converter type should be UPLINK or DOWNLINK!");
        }

        if (body["configuration"] is not JsonObject configurationNode)
        {
            return (isUplink, null, "Converter configuration should be specified!");
        }

        try
        {
            var configuration = TcpReferenceJson.ReadConverterConfiguration(JsonSerializer.SerializeToElement(configurationNode));

            // Compile now: a bad script is the caller's 400, not a broken integration later.
            if (isUplink)
            {
                TcpIntegration.CreateUplinkConverter(configuration, new Dictionary<string, string>(), new Core.Telemetry.KeyTable(), static () => 0);
            }
            else
            {
                TcpIntegration.CreateDownlinkConverter(configuration, new Dictionary<string, string>());
            }

            return (isUplink, configuration, null);
        }
        catch (Exception ex) when (ex is JsonException or ArgumentException)
        {
            return (isUplink, null, $"Invalid converter configuration: {ex.Message}");
        }
    }

    private (TcpIntegrationOptions? Options, string? Error) Compile(JsonObject body, Guid tenantId)
    {
        if (string.IsNullOrWhiteSpace(RestBody.String(body, "name")))
        {
            return (null, "Integration name should be specified!");
        }

        var element = JsonSerializer.SerializeToElement(body);
        if (TcpReferenceJson.ConverterId(element, "defaultConverterId") is not { } uplinkId ||
            GetConverter(tenantId, uplinkId) is not { IsUplink: true } uplink)
        {
            return (null, "Integration defaultConverterId should name an UPLINK converter of your tenant!");
        }

        TcpConverterConfiguration? downlink = null;
        if (TcpReferenceJson.ConverterId(element, "downlinkConverterId") is { } downlinkId)
        {
            if (GetConverter(tenantId, downlinkId) is not { IsUplink: false } found)
            {
                return (null, "Integration downlinkConverterId should name a DOWNLINK converter of your tenant!");
            }

            downlink = found.Configuration;
        }

        try
        {
            var options = TcpReferenceJson.ReadIntegration(element, uplink.Configuration, downlink);
            if (options.ClientConfiguration.Port is < 0 or > 65535)
            {
                return (null, $"Port {options.ClientConfiguration.Port} is not a port number (0-65535)");
            }

            // Compiling here (framer, scripts) turns a bad configuration into the caller's 400.
            TcpIntegration.Create(options, engine.Keys);
            return (options, null);
        }
        catch (Exception ex) when (ex is JsonException or ArgumentException)
        {
            return (null, $"Invalid integration configuration: {ex.Message}");
        }
    }

    /// <summary>Makes the entity run <paramref name="options"/>: swaps the handler, rebinds, or stops. Returns a bind error or null.</summary>
    private async Task<string?> ApplyAsync(IntegrationEntity entity, TcpIntegrationOptions options, CancellationToken cancellationToken = default)
    {
        var integration = TcpIntegration.Create(options, engine.Keys);
        sink.SetTenant(integration, entity.TenantId);
        var port = options.ClientConfiguration.Port;
        if (!options.Enabled)
        {
            await StopListenerAsync(entity);
            entity.Integration = integration;
            entity.LastError = null;
            return null;
        }

        var current = entity.Listener;
        if (current is not null && (port == 0 || port == current.EndPoint.Port) && current.Backlog == TcpIntegrationListener.BacklogOf(options))
        {
            current.Swap(integration);
            entity.Integration = integration;
            return null;
        }

        if (port != 0 && _integrations.Values.FirstOrDefault(i => i.Id != entity.Id && i.BoundEndPoint?.Port == port) is { } holder)
        {
            return $"Port {port} is already used by integration '{holder.Name}'";
        }

        TcpIntegrationListener listener;
        try
        {
            // When the port stays the same (a backlog change), the old listener must let go of it first.
            if (current is not null && port == current.EndPoint.Port)
            {
                await StopListenerAsync(entity);
                current = null;
            }

            listener = await TcpIntegrationListener.StartAsync(integration, settings.BindAddress, services, cancellationToken);
        }
        catch (IOException ex)
        {
            var reason = $"Port {port} cannot be bound ({ex.InnerException?.Message ?? ex.Message}): choose another port";
            if (current is null)
            {
                entity.LastError = reason;
            }

            TcpHostLog.IntegrationFailed(logger, options.Name, entity.Id, reason);
            return reason;
        }

        if (current is not null)
        {
            await StopListenerAsync(entity);
        }

        entity.Listener = listener;
        entity.Integration = integration;
        entity.LastError = null;
        TcpHostLog.IntegrationBound(logger, options.Name, entity.Id, listener.EndPoint.ToString());
        return null;
    }

    private async Task StopListenerAsync(IntegrationEntity entity)
    {
        if (entity.Listener is { } listener)
        {
            entity.Listener = null;
            await listener.DisposeAsync();
            TcpHostLog.IntegrationStopped(logger, entity.Name, entity.Id);
        }
    }
}
