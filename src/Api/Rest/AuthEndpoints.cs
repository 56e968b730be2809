using Perf.Core;

namespace Perf.Api.Rest;

internal static class AuthEndpoints
{
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

            var (token, refresh) = jwt.Issue(user);
            return Results.Json(new { token, refreshToken = refresh, scope = (string?)null });
        });

        secured.MapGet("/auth/user", (HttpContext context, PerfEngine engine) =>
        {
            var user = engine.Registry.GetUser(JwtAuthFilter.GetUser(context).UserId);
            return user is null ? ApiError.NotFound() : Results.Json(EntityJson.User(user));
        });

        secured.MapPost("/auth/logout", () => Results.Ok());
    }
}
