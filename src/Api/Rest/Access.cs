using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>
/// Who may see what: a tenant administrator sees its tenant; a customer user only its customer's
/// entities. Anything not visible answers 404 (never 403), so ids of others do not leak.
/// </summary>
public static class Access
{
    public static bool CanSee(AuthUser user, Device device) => user.Authority switch
    {
        Authority.TenantAdmin => device.TenantId == user.TenantId,
        Authority.CustomerUser => device.TenantId == user.TenantId && device.CustomerId == user.CustomerId && user.CustomerId != Guid.Empty,
        _ => false,
    };

    public static bool CanSee(AuthUser user, Customer customer) => user.Authority switch
    {
        Authority.TenantAdmin => customer.TenantId == user.TenantId,
        Authority.CustomerUser => customer.Id == user.CustomerId,
        _ => false,
    };

    public static bool CanSee(AuthUser user, User other) => user.Authority switch
    {
        Authority.SysAdmin => other.Authority == Authority.TenantAdmin || other.Id == user.UserId,
        Authority.TenantAdmin => other.TenantId == user.TenantId && other.Authority != Authority.SysAdmin,
        _ => other.Id == user.UserId,
    };
}
