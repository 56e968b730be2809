using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>Tenants (SYS_ADMIN), customers (TENANT_ADMIN) and users.</summary>
internal static class TenantEndpoints
{
    public static void MapTenantEndpoints(this RouteGroupBuilder api)
    {
        api.MapPost("/tenant", async (HttpRequest request, PerfEngine engine) =>
        {
            var (body, error) = await RestBody.ReadObjectAsync(request);
            if (error is not null)
            {
                return error;
            }

            // The reference's save: with the id of an existing tenant it updates that tenant.
            var title = RestBody.String(body!, "title") ?? string.Empty;
            var details = EntityJson.ReadDetails(body!, EntityJson.ContactFields);
            var result = EntityJson.ReadId(body!["id"]) is { } id && id != Guid.Empty
                ? await engine.Registry.UpdateTenantAsync(id, title, details)
                : await engine.Registry.CreateTenantAsync(title, details);
            return result.IsOk ? Results.Json(EntityJson.Tenant(result.Value!)) : RegistryError(result.Status, result.Error);
        }).Roles(Authority.SysAdmin);

        api.MapGet("/tenant/{id:guid}", (Guid id, PerfEngine engine) =>
            engine.Registry.GetTenant(id) is { } tenant ? Results.Json(EntityJson.Tenant(tenant)) : ApiError.NotFound())
            .Roles(Authority.SysAdmin);

        api.MapGet("/tenants", (PerfEngine engine, int? pageSize, int? page, string? textSearch) =>
            Results.Json(EntityJson.Page(
                EntityJson.PageOf(engine.Registry.ListTenants().Where(t => Matches(textSearch, t.Title)).ToArray(), pageSize ?? 100, page ?? 0),
                t => EntityJson.Tenant(t))))
            .Roles(Authority.SysAdmin);

        api.MapDelete("/tenant/{id:guid}", async (Guid id, PerfEngine engine) =>
        {
            var result = await engine.Registry.DeleteTenantAsync(id);
            return result.IsOk ? Results.Ok() : RegistryError(result.Status, result.Error);
        }).Roles(Authority.SysAdmin);

        api.MapPost("/customer", async (HttpContext context, PerfEngine engine) =>
        {
            var user = JwtAuthFilter.GetUser(context);
            var (body, error) = await RestBody.ReadObjectAsync(context.Request);
            if (error is not null)
            {
                return error;
            }

            // The reference's save: with the id of one of the tenant's customers it updates that customer.
            var title = RestBody.String(body!, "title") ?? string.Empty;
            var details = EntityJson.ReadDetails(body!, EntityJson.ContactFields);
            RegistryResult<Customer> result;
            if (EntityJson.ReadId(body!["id"]) is { } id && id != Guid.Empty)
            {
                if (engine.Registry.GetCustomer(id) is not { } existing || !Access.CanSee(user, existing))
                {
                    return ApiError.NotFound();
                }

                result = await engine.Registry.UpdateCustomerAsync(id, title, details);
            }
            else
            {
                result = await engine.Registry.CreateCustomerAsync(user.TenantId, title, details);
            }

            return result.IsOk ? Results.Json(EntityJson.Customer(result.Value!)) : RegistryError(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapGet("/customer/{id:guid}", (Guid id, HttpContext context, PerfEngine engine) =>
            engine.Registry.GetCustomer(id) is { } customer && Access.CanSee(JwtAuthFilter.GetUser(context), customer)
                ? Results.Json(EntityJson.Customer(customer))
                : ApiError.NotFound())
            .Roles(Authority.TenantAdmin, Authority.CustomerUser);

        api.MapGet("/customers", (HttpContext context, PerfEngine engine, int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder) =>
        {
            var user = JwtAuthFilter.GetUser(context);
            var all = engine.Registry.ListCustomers(user.TenantId).Where(c => Matches(textSearch, c.Title)).ToList();
            if (sortProperty is "title" or "name")
            {
                all.Sort((a, b) => string.Compare(a.Title, b.Title, StringComparison.OrdinalIgnoreCase));
            }

            if (string.Equals(sortOrder, "DESC", StringComparison.OrdinalIgnoreCase))
            {
                all.Reverse();
            }

            return Results.Json(EntityJson.Page(EntityJson.PageOf(all, pageSize ?? 100, page ?? 0), c => EntityJson.Customer(c)));
        }).Roles(Authority.TenantAdmin);

        api.MapDelete("/customer/{id:guid}", async (Guid id, HttpContext context, PerfEngine engine) =>
        {
            if (engine.Registry.GetCustomer(id) is not { } customer || !Access.CanSee(JwtAuthFilter.GetUser(context), customer))
            {
                return ApiError.NotFound();
            }

            var result = await engine.Registry.DeleteCustomerAsync(id);
            return result.IsOk ? Results.Ok() : RegistryError(result.Status, result.Error);
        }).Roles(Authority.TenantAdmin);

        api.MapDelete("/user/{id:guid}", async (Guid id, HttpContext context, PerfEngine engine) =>
        {
            var caller = JwtAuthFilter.GetUser(context);
            if (engine.Registry.GetUser(id) is not { } user || !Access.CanSee(caller, user))
            {
                return ApiError.NotFound();
            }

            if (user.Id == caller.UserId)
            {
                return ApiError.BadRequest("You cannot delete your own user");
            }

            var result = await engine.Registry.DeleteUserAsync(id);
            return result.IsOk ? Results.Ok() : RegistryError(result.Status, result.Error);
        }).Roles(Authority.SysAdmin, Authority.TenantAdmin);

        api.MapPost("/user", async (HttpContext context, PerfEngine engine) =>
        {
            var caller = JwtAuthFilter.GetUser(context);
            var (body, error) = await RestBody.ReadObjectAsync(context.Request);
            if (error is not null)
            {
                return error;
            }

            var email = RestBody.String(body!, "email") ?? string.Empty;
            var details = EntityJson.ReadDetails(body!, EntityJson.UserFields);
            if (EntityJson.ReadId(body!["id"]) is { } id && id != Guid.Empty)
            {
                // The reference's save with an existing id: e-mail, names and details change; the password, authority,
                // tenant and customer stay.
                if (engine.Registry.GetUser(id) is not { } existing || !Access.CanSee(caller, existing))
                {
                    return ApiError.NotFound();
                }

                var updated = await engine.Registry.UpdateUserAsync(id, email, RestBody.String(body!, "firstName"), RestBody.String(body!, "lastName"), details);
                return updated.IsOk ? Results.Json(EntityJson.User(updated.Value!)) : RegistryError(updated.Status, updated.Error);
            }

            Authority authority;
            try
            {
                authority = JwtService.ParseAuthority(RestBody.String(body!, "authority"));
            }
            catch (FormatException ex)
            {
                return ApiError.BadRequest($"'authority' must be TENANT_ADMIN or CUSTOMER_USER: {ex.Message}");
            }

            var tenantId = caller.TenantId;
            var customerId = Guid.Empty;
            switch (caller.Authority, authority)
            {
                case (Authority.SysAdmin, Authority.TenantAdmin):
                    if (EntityJson.ReadId(body!["tenantId"]) is not { } t || engine.Registry.GetTenant(t) is null)
                    {
                        return ApiError.BadRequest("'tenantId' of an existing tenant is required");
                    }

                    tenantId = t;
                    break;
                case (Authority.TenantAdmin, Authority.TenantAdmin):
                    break;
                case (Authority.TenantAdmin, Authority.CustomerUser):
                    if (EntityJson.ReadId(body!["customerId"]) is not { } c || engine.Registry.GetCustomer(c) is not { } customer ||
                        customer.TenantId != caller.TenantId)
                    {
                        return ApiError.BadRequest("'customerId' of an existing customer of your tenant is required");
                    }

                    customerId = c;
                    break;
                default:
                    return ApiError.Forbidden();
            }

            // Without a password the user waits for his activation (GET /api/user/{id}/activationLink, then
            // POST /api/noauth/activate), as the reference's; scripts may give an initial password instead.
            var result = await engine.Registry.CreateUserAsync(tenantId, customerId, email, authority, RestBody.String(body!, "password"),
                RestBody.String(body!, "firstName"), RestBody.String(body!, "lastName"), details);
            return result.IsOk ? Results.Json(EntityJson.User(result.Value!)) : RegistryError(result.Status, result.Error);
        }).Roles(Authority.SysAdmin, Authority.TenantAdmin);

        // The reference's activation link of a user created without a password (it would be e-mailed).
        api.MapGet("/user/{id:guid}/activationLink", (Guid id, HttpContext context, PerfEngine engine) =>
        {
            if (engine.Registry.GetUser(id) is not { } user || !Access.CanSee(JwtAuthFilter.GetUser(context), user))
            {
                return ApiError.NotFound();
            }

            return EntityRegistry.ActivationToken(user) is { } token
                ? Results.Text($"{context.Request.Scheme}://{context.Request.Host}/api/noauth/activate?activateToken={token}", "text/plain")
                : ApiError.BadRequest("User is already activated!");
        }).Roles(Authority.SysAdmin, Authority.TenantAdmin);

        api.MapGet("/user/{id:guid}", (Guid id, HttpContext context, PerfEngine engine) =>
            engine.Registry.GetUser(id) is { } user && Access.CanSee(JwtAuthFilter.GetUser(context), user)
                ? Results.Json(EntityJson.User(user))
                : ApiError.NotFound());

        api.MapGet("/tenant/{tenantId:guid}/users", (Guid tenantId, PerfEngine engine, int? pageSize, int? page, string? textSearch) =>
            Results.Json(EntityJson.Page(
                EntityJson.PageOf(engine.Registry.ListUsers(tenantId).Where(u => u.Authority == Authority.TenantAdmin && Matches(textSearch, u)).ToArray(),
                    pageSize ?? 100, page ?? 0),
                u => EntityJson.User(u))))
            .Roles(Authority.SysAdmin);

        // The reference's getUsers for a tenant administrator: every user of the tenant.
        api.MapGet("/users", (HttpContext context, PerfEngine engine, int? pageSize, int? page, string? textSearch) =>
            Results.Json(EntityJson.Page(
                EntityJson.PageOf(engine.Registry.ListUsers(JwtAuthFilter.GetUser(context).TenantId).Where(u => Matches(textSearch, u)).ToArray(),
                    pageSize ?? 100, page ?? 0),
                u => EntityJson.User(u))))
            .Roles(Authority.TenantAdmin);

        api.MapGet("/customer/{customerId:guid}/users", (Guid customerId, HttpContext context, PerfEngine engine, int? pageSize, int? page, string? textSearch) =>
        {
            var caller = JwtAuthFilter.GetUser(context);
            if (engine.Registry.GetCustomer(customerId) is not { } customer || customer.TenantId != caller.TenantId)
            {
                return ApiError.NotFound();
            }

            var users = engine.Registry.ListUsers(caller.TenantId).Where(u => u.CustomerId == customerId && Matches(textSearch, u)).ToArray();
            return Results.Json(EntityJson.Page(EntityJson.PageOf(users, pageSize ?? 100, page ?? 0), u => EntityJson.User(u)));
        }).Roles(Authority.TenantAdmin);
    }

    /// <summary>The reference's textSearch: a case-insensitive part of the name (a user's e-mail, first or last name).</summary>
    private static bool Matches(string? textSearch, params string?[] fields) =>
        string.IsNullOrEmpty(textSearch) || fields.Any(f => f?.Contains(textSearch, StringComparison.OrdinalIgnoreCase) == true);

    private static bool Matches(string? textSearch, User user) => Matches(textSearch, user.Email, user.FirstName, user.LastName);

    public static IResult RegistryError(RegistryStatus status, string? error) => status switch
    {
        RegistryStatus.NotFound => ApiError.NotFound(error ?? "Requested item wasn't found!"),
        RegistryStatus.Conflict => ApiError.BadRequest(error ?? "Already exists"),
        _ => ApiError.BadRequest(error ?? "Invalid request"),
    };
}
