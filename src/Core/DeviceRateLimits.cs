using System.Collections.Concurrent;
using Perf.Core.Domain;

namespace Perf.Core;

/// <summary>
/// Per-tenant, per-device and per-gateway message rate limits shared by every door (MQTT, HTTP device API,
/// CoAP): one limiter per tenant and per device (or gateway), kept across reconnects and doors, so a device
/// can neither reset its budget by reconnecting nor double it by switching protocol. Every uplink costs one
/// token of its tenant's limiter and one of its gateway's (gateway sessions) or device's.
/// </summary>
public sealed class DeviceRateLimits
{
    private readonly RateLimit? _tenant;
    private readonly RateLimit? _device;
    private readonly RateLimit? _gateway;
    private readonly ConcurrentDictionary<Guid, RateLimiter> _tenants = new();
    private readonly ConcurrentDictionary<Guid, RateLimiter> _devices = new();

    /// <summary>Limits in the reference's format (<c>"20:1,600:60"</c>); null or blank = none. A malformed one throws <see cref="FormatException"/>.</summary>
    public DeviceRateLimits(string? tenant, string? device, string? gateway)
    {
        _tenant = RateLimit.Parse(tenant);
        _device = RateLimit.Parse(device);
        _gateway = RateLimit.Parse(gateway);
    }

    /// <summary>No limits at all.</summary>
    public static DeviceRateLimits None { get; } = new(null, null, null);

    /// <summary>The limiters a session of <paramref name="device"/> charges; resolve once per session (or per request).</summary>
    public SessionLimiters For(Device device)
    {
        var own = device.IsGateway ? _gateway : _device;
        return new SessionLimiters(
            _tenant is null ? null : _tenants.GetOrAdd(device.TenantId, static (_, limit) => limit.CreateLimiter(), _tenant),
            own is null ? null : _devices.GetOrAdd(device.Id, static (_, limit) => limit.CreateLimiter(), own));
    }

    /// <summary>Charges one message of <paramref name="device"/>; returns the exceeded limit's description, or null when allowed.</summary>
    public string? TryAcquire(Device device) => _tenant is null && _device is null && _gateway is null ? null : For(device).TryAcquire();

    /// <summary>Forgets a deleted device's limiter.</summary>
    public void Remove(Guid deviceId) => _devices.TryRemove(deviceId, out _);
}

/// <summary>The tenant and device (or gateway) limiters of one session; either may be absent.</summary>
public readonly record struct SessionLimiters(RateLimiter? Tenant, RateLimiter? Own)
{
    /// <summary>Charges one message; returns the exceeded limit's description, or null when allowed.</summary>
    public string? TryAcquire()
    {
        // The device's own budget first, so one noisy device does not spend its tenant's budget on refused messages.
        if (Own is { } own && !own.TryAcquire())
        {
            return own.Limit.Text;
        }

        if (Tenant is { } tenant && !tenant.TryAcquire())
        {
            return "tenant " + tenant.Limit.Text;
        }

        return null;
    }
}
