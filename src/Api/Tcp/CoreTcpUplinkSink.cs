using System.Runtime.CompilerServices;
using Perf.Core;
using Perf.Core.Domain;
using Perf.Core.Telemetry;
using Perf.Kestrel.Tcp;

namespace Perf.Api.Tcp;

/// <summary>
/// The TCP door's seam into the core: a decoded message finds its device by name in the integration's
/// tenant (creating it with the decoded type when the integration allows it), then its telemetry and
/// client attributes are saved through the core; the task completes once they are committed. Sessions
/// go into the core's session table, where shared-attribute updates and RPCs find them.
/// </summary>
internal sealed class CoreTcpUplinkSink(PerfEngine engine) : ITcpUplinkSink
{
    // Integrations created over REST belong to their creator's tenant; the default one (configuration) to
    // the first tenant. Weak keys: a replaced TcpIntegration (configuration change) is not kept alive here.
    private readonly ConditionalWeakTable<TcpIntegration, StrongBox<Guid>> _tenants = new();

    // Uplinks of one socket read are published concurrently (the seed's two-line nc names SN-002 twice):
    // the first creation of a name is shared so the second uplink does not fail on a duplicate name.
    private readonly Dictionary<(Guid Tenant, string Name), Task<RegistryResult<Device>>> _creating = [];
    private readonly Lock _creatingLock = new();

    private Guid _defaultTenant;

    /// <summary>Binds an integration to the tenant that owns it (before it serves connections).</summary>
    public void SetTenant(TcpIntegration integration, Guid tenantId) =>
        _tenants.AddOrUpdate(integration, new StrongBox<Guid>(tenantId));

    public ValueTask<TcpUplinkResult> PublishAsync(TcpUplink uplink)
    {
        var tenantId = TenantOf(uplink.Integration);
        if (tenantId == Guid.Empty)
        {
            return ValueTask.FromResult(TcpUplinkResult.Fail(UplinkStatus.Unavailable, "no tenant owns this integration"));
        }

        if (string.IsNullOrEmpty(uplink.DeviceName))
        {
            return ValueTask.FromResult(TcpUplinkResult.Fail(UplinkStatus.BadPayload, "the converter returned no deviceName"));
        }

        // The door reuses the uplink and its lists once this call returns: copy before the first await.
        var telemetry = uplink.Telemetry.Count == 0 ? [] : uplink.Telemetry.ToArray();
        var attributes = uplink.Attributes.Count == 0 ? [] : uplink.Attributes.ToArray();
        var device = engine.Registry.FindDeviceByName(tenantId, uplink.DeviceName);
        if (device is not null)
        {
            return StoreAsync(device.Id, telemetry, attributes);
        }

        if (!uplink.AllowCreateDevices)
        {
            return ValueTask.FromResult(TcpUplinkResult.Fail(UplinkStatus.NotFound, $"device '{uplink.DeviceName}' not found and the integration does not create devices"));
        }

        return CreateAndStoreAsync(tenantId, uplink.DeviceName, uplink.DeviceType, telemetry, attributes);
    }

    public void OnSessionOpened(IDeviceSession session) => engine.Sessions.Register(session);

    public void OnSessionClosed(IDeviceSession session) => engine.Sessions.Unregister(session);

    private Guid TenantOf(TcpIntegration integration)
    {
        if (_tenants.TryGetValue(integration, out var box))
        {
            return box.Value;
        }

        if (_defaultTenant == Guid.Empty && engine.Registry.ListTenants() is [var first, ..])
        {
            _defaultTenant = first.Id;
        }

        return _defaultTenant;
    }

    private async ValueTask<TcpUplinkResult> CreateAndStoreAsync(Guid tenantId, string name, string type, TsKvEntry[] telemetry, KvEntry[] attributes)
    {
        var key = (tenantId, name);
        Task<RegistryResult<Device>>? creation;
        lock (_creatingLock)
        {
            if (!_creating.TryGetValue(key, out creation))
            {
                creation = engine.Registry.CreateDeviceAsync(tenantId, name, string.IsNullOrEmpty(type) ? null : type);
                _creating[key] = creation;
            }
        }

        RegistryResult<Device> created;
        try
        {
            created = await creation;
        }
        finally
        {
            lock (_creatingLock)
            {
                if (_creating.TryGetValue(key, out var current) && current == creation)
                {
                    _creating.Remove(key);
                }
            }
        }

        // A creation racing ours (REST, another connection) may have won the name: use its device.
        var device = created.Value ?? engine.Registry.FindDeviceByName(tenantId, name);
        if (device is null)
        {
            return TcpUplinkResult.Fail(UplinkStatus.BadPayload, $"device '{name}' could not be created: {created.Error}");
        }

        return await StoreAsync(device.Id, telemetry, attributes);
    }

    private async ValueTask<TcpUplinkResult> StoreAsync(Guid deviceId, TsKvEntry[] telemetry, KvEntry[] attributes)
    {
        var saved = telemetry.Length == 0 || await engine.Telemetry.SaveAsync(deviceId, telemetry);
        if (saved && attributes.Length > 0)
        {
            saved = await engine.Attributes.SaveAsync(deviceId, AttributeScope.Client, attributes);
        }

        return saved ? TcpUplinkResult.Ok(deviceId) : TcpUplinkResult.Fail(UplinkStatus.NotFound, "the device was deleted");
    }
}
