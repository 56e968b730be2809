using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>Endpoint metadata: the authorities allowed to call an endpoint (none: any signed-in user).</summary>
public sealed class RolesMetadata(params Authority[] roles)
{
    public IReadOnlyList<Authority> Roles { get; } = roles;
}

/// <summary>
/// Authenticates REST calls from <c>X-Authorization: Bearer</c> (the reference's header) or
/// <c>Authorization: Bearer</c>, then enforces the endpoint's <see cref="RolesMetadata"/>.
/// 401 for a missing, invalid or expired token (errorCode 11 when expired), 403 for a role not allowed.
/// </summary>
public sealed class JwtAuthFilter(JwtService jwt, PerfEngine engine) : IEndpointFilter
{
    private const string UserKey = "perf.user";

    public static AuthUser GetUser(HttpContext context) =>
        context.Items[UserKey] as AuthUser ?? throw new InvalidOperationException("endpoint is not behind JwtAuthFilter");

    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var token = ReadBearer(http.Request.Headers["X-Authorization"]);
        if (token.IsEmpty)
        {
            token = ReadBearer(http.Request.Headers.Authorization);
        }

        if (token.IsEmpty)
        {
            return ApiError.Unauthorized("Authentication failed: no bearer token in X-Authorization or Authorization header");
        }

        switch (Authenticate(jwt, engine.Registry, token, out var user))
        {
            case TokenCheck.Expired:
                return ApiError.Of(401, "Token has expired", ErrorCode.JwtTokenExpired);
            case TokenCheck.Invalid:
                return ApiError.Unauthorized("Authentication failed: invalid token");
        }

        var roles = http.GetEndpoint()?.Metadata.GetMetadata<RolesMetadata>();
        if (roles is not null && roles.Roles.Count > 0 && !roles.Roles.Contains(user!.Authority))
        {
            return ApiError.Forbidden();
        }

        http.Items[UserKey] = user;
        return await next(context);
    }

    /// <summary>
    /// An access token whose signature and claims check out, of a user who still exists as the token
    /// describes him, with the password he had then: a deleted user's tokens (or those of a user deleted and
    /// created again, who gets a new id) and tokens issued before a password change stop working at once, not at
    /// their expiry.
    /// </summary>
    public static TokenCheck Authenticate(JwtService jwt, EntityRegistry registry, ReadOnlySpan<char> token, out AuthUser? user)
    {
        var check = jwt.Validate(token, refresh: false, out user);
        if (check == TokenCheck.Valid &&
            (registry.GetUser(user!.UserId) is not { } current || current.Authority != user.Authority ||
             current.TenantId != user.TenantId || current.CustomerId != user.CustomerId || user.Stamp != jwt.Stamp(current)))
        {
            user = null;
            return TokenCheck.Invalid;
        }

        return check;
    }

    /// <summary>The token of a <c>Bearer</c> header, as a slice of the header (empty when there is none).</summary>
    internal static ReadOnlySpan<char> ReadBearer(string? header)
    {
        const string Prefix = "Bearer ";
        if (string.IsNullOrEmpty(header) || !header.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
        {
            return default;
        }

        return header.AsSpan(Prefix.Length).Trim();
    }
}

public static class RolesExtensions
{
    /// <summary>Restricts the endpoint to these authorities.</summary>
    public static TBuilder Roles<TBuilder>(this TBuilder builder, params Authority[] roles)
        where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new RolesMetadata(roles));
}
