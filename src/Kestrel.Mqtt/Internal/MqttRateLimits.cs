using System.Collections.Concurrent;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// The door's rate limiters, shared by all connections: one per tenant, per device and per gateway,
/// kept across reconnects so a device cannot reset its budget by reconnecting. Every uplink PUBLISH
/// costs one token of its tenant's limiter and one of its gateway's (gateway sessions) or device's.
/// </summary>
internal sealed class MqttRateLimits
{
    private readonly RateLimit? _tenant;
    private readonly RateLimit? _device;
    private readonly RateLimit? _gateway;
    private readonly ConcurrentDictionary<Guid, RateLimiter> _tenants = new();
    private readonly ConcurrentDictionary<Guid, RateLimiter> _devices = new();

    public MqttRateLimits(MqttOptions options)
    {
        _tenant = RateLimit.Parse(options.TenantMessagesRateLimit);
        _device = RateLimit.Parse(options.DeviceMessagesRateLimit);
        _gateway = RateLimit.Parse(options.GatewayMessagesRateLimit);
    }

    /// <summary>The limiters a session of <paramref name="device"/> charges; resolved once at CONNECT.</summary>
    public SessionLimiters For(Device device)
    {
        var own = device.IsGateway ? _gateway : _device;
        return new SessionLimiters(
            _tenant is null ? null : _tenants.GetOrAdd(device.TenantId, static (_, limit) => limit.CreateLimiter(), _tenant),
            own is null ? null : _devices.GetOrAdd(device.Id, static (_, limit) => limit.CreateLimiter(), own));
    }

    /// <summary>Forgets a deleted device's limiter.</summary>
    public void Remove(Guid deviceId) => _devices.TryRemove(deviceId, out _);
}

/// <summary>The tenant and device (or gateway) limiters of one session; either may be absent.</summary>
internal readonly record struct SessionLimiters(RateLimiter? Tenant, RateLimiter? Own)
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
