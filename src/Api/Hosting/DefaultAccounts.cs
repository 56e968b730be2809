using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Api.Hosting;

/// <summary>
/// First start: a system administrator and a default tenant with its administrator. Overridable with
/// SYSADMIN_EMAIL / SYSADMIN_PASSWORD / TENANT_ADMIN_EMAIL / TENANT_ADMIN_PASSWORD. The accounts are
/// printed with where their password came from, never the password itself (no secret in any log line).
/// </summary>
internal static partial class DefaultAccounts
{
    public static async Task EnsureAsync(PerfEngine engine, IConfiguration configuration, ILogger logger)
    {
        var registry = engine.Registry;
        var sysEmail = configuration["SYSADMIN_EMAIL"] ?? "sysadmin@example.com";
        var sysPassword = configuration["SYSADMIN_PASSWORD"];
        if (registry.FindUserByEmail(sysEmail) is null)
        {
            var created = await registry.CreateUserAsync(Guid.Empty, Guid.Empty, sysEmail, Authority.SysAdmin, sysPassword ?? "sysadmin");
            EnsureCreated(created.Status, created.Error, "system administrator");
            Created(logger, "system administrator", sysEmail, sysPassword is null ? DefaultSource : "SYSADMIN_PASSWORD");
        }

        var tenantEmail = configuration["TENANT_ADMIN_EMAIL"] ?? "tenant@example.com";
        var tenantPassword = configuration["TENANT_ADMIN_PASSWORD"];
        if (registry.FindUserByEmail(tenantEmail) is null)
        {
            var tenants = registry.ListTenants();
            var tenant = tenants.Count > 0 ? tenants[0] : null;
            if (tenant is null)
            {
                var createdTenant = await registry.CreateTenantAsync("Default tenant");
                EnsureCreated(createdTenant.Status, createdTenant.Error, "default tenant");
                tenant = createdTenant.Value!;
            }

            var created = await registry.CreateUserAsync(tenant.Id, Guid.Empty, tenantEmail, Authority.TenantAdmin, tenantPassword ?? "tenant");
            EnsureCreated(created.Status, created.Error, "tenant administrator");
            Created(logger, "tenant administrator", tenantEmail, tenantPassword is null ? DefaultSource : "TENANT_ADMIN_PASSWORD");
        }
    }

    private static void EnsureCreated(RegistryStatus status, string? error, string what)
    {
        if (status != RegistryStatus.Ok)
        {
            throw new InvalidOperationException($"could not create the {what}: {error}");
        }
    }

    private const string DefaultSource = "the documented default (README, Default credentials); change it";

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "Created {Role} {Email}, password from {PasswordSource}")]
    private static partial void Created(ILogger logger, string role, string email, string passwordSource);
}
