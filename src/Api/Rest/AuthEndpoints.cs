using Perf.Core;

namespace Perf.Api.Rest;

internal static class AuthEndpoints
{
    /// <summary>The reference's default password policy: at least 6 characters.</summary>
    private const int MinPasswordLength = 6;

    public static void MapAuthEndpoints(this IEndpointRouteBuilder app, RouteGroupBuilder secured)
    {
        app.MapPost("/api/auth/login", async (HttpRequest request, PerfEngine engine, JwtService jwt, ConnectionGuard guard) =>
        {
            // Wrong-password blocking per source address (shared with the device doors): a blocked address
            // gets 429 before its password is checked.
            var remote = request.HttpContext.Connection.RemoteIpAddress;
            if (guard.IsBlocked("rest", remote))
            {
                return ApiError.Of(429, "Too many failed logins from this address; try again later", ErrorCode.TooManyRequests);
            }

            var (body, error) = await RestBody.ReadObjectAsync(request);
            if (error is not null)
            {
                return error;
            }

            var username = RestBody.String(body!, "username");
            var password = RestBody.String(body!, "password");
            if (string.IsNullOrEmpty(username) || string.IsNullOrEmpty(password))
            {
                return ApiError.BadRequest("'username' and 'password' are required");
            }

            var user = engine.Registry.VerifyPassword(username, password);
            if (user is null)
            {
                guard.AuthFailed("rest", remote, "wrong user name or password");
                return ApiError.Unauthorized("Invalid username or password");
            }

            var (token, refresh) = jwt.Issue(user);
            return Results.Json(new { token, refreshToken = refresh, scope = (string?)null });
        });

        // The reference's activation: the token of the activation link and the user's first password; answers a pair.
        app.MapPost("/api/noauth/activate", async (HttpRequest request, PerfEngine engine, JwtService jwt) =>
        {
            var (body, error) = await RestBody.ReadObjectAsync(request);
            if (error is not null)
            {
                return error;
            }

            if (RestBody.String(body!, "activateToken") is not { Length: > 0 } token)
            {
                return ApiError.BadRequest("'activateToken' is required");
            }

            if (RestBody.String(body!, "password") is not { Length: >= MinPasswordLength } password)
            {
                return ApiError.BadRequest($"Password must be at least {MinPasswordLength} characters long!");
            }

            var activated = await engine.Registry.ActivateAsync(token, password);
            if (!activated.IsOk)
            {
                return TenantEndpoints.RegistryError(activated.Status, activated.Error);
            }

            var (access, refresh) = jwt.Issue(activated.Value!);
            return Results.Json(new { token = access, refreshToken = refresh, scope = (string?)null });
        });

        app.MapPost("/api/auth/token", async (HttpRequest request, PerfEngine engine, JwtService jwt) =>
        {
            var (body, error) = await RestBody.ReadObjectAsync(request);
            if (error is not null)
            {
                return error;
            }

            var refreshToken = RestBody.String(body!, "refreshToken");
            if (string.IsNullOrEmpty(refreshToken))
            {
                return ApiError.BadRequest("'refreshToken' is required");
            }

            switch (jwt.Validate(refreshToken, refresh: true, out var claims))
            {
                case TokenCheck.Expired:
                    return ApiError.Of(401, "Refresh token has expired", ErrorCode.JwtTokenExpired);
                case TokenCheck.Invalid:
                    return ApiError.Unauthorized("Invalid refresh token");
            }

            var user = engine.Registry.GetUser(claims!.UserId);
            if (user is null)
            {
                return ApiError.Unauthorized("User of the refresh token no longer exists");
            }

            if (claims.Stamp != jwt.Stamp(user))
            {
                return ApiError.Unauthorized("The password changed since this refresh token was issued");
            }

            var (token, refresh) = jwt.Issue(user);
            return Results.Json(new { token, refreshToken = refresh, scope = (string?)null });
        });

        secured.MapGet("/auth/user", (HttpContext context, PerfEngine engine) =>
        {
            var user = engine.Registry.GetUser(JwtAuthFilter.GetUser(context).UserId);
            return user is null ? ApiError.NotFound() : Results.Json(EntityJson.User(user));
        });

        // As the reference: the login's tokens, access and refresh, are refused from now on.
        secured.MapPost("/auth/logout", (HttpContext context, JwtService jwt) =>
        {
            jwt.EndSession(JwtAuthFilter.GetUser(context).SessionId);
            return Results.Ok();
        });

        // The reference's changePassword: the current password, then the new one; every token issued before stops
        // working, and the answer is a new pair for the caller.
        secured.MapPost("/auth/changePassword", async (HttpContext context, PerfEngine engine, JwtService jwt) =>
        {
            var (body, error) = await RestBody.ReadObjectAsync(context.Request);
            if (error is not null)
            {
                return error;
            }

            if (engine.Registry.GetUser(JwtAuthFilter.GetUser(context).UserId) is not { } user)
            {
                return ApiError.NotFound();
            }

            if (!EntityRegistry.VerifyPassword(user, RestBody.String(body!, "currentPassword") ?? string.Empty))
            {
                return ApiError.BadRequest("Current password doesn't match!");
            }

            if (RestBody.String(body!, "newPassword") is not { Length: >= MinPasswordLength } password)
            {
                return ApiError.BadRequest($"Password must be at least {MinPasswordLength} characters long!");
            }

            var changed = await engine.Registry.SetPasswordAsync(user.Id, password);
            if (!changed.IsOk)
            {
                return TenantEndpoints.RegistryError(changed.Status, changed.Error);
            }

            var (token, refresh) = jwt.Issue(changed.Value!);
            return Results.Json(new { token, refreshToken = refresh, scope = (string?)null });
        });
    }
}
