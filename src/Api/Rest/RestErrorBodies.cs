using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.WebUtilities;

namespace Perf.Api.Rest;

/// <summary>
/// Gives the REST API's errors that ASP.NET Core answers by itself the same JSON body as ours
/// (<see cref="ApiError"/>): a path no endpoint serves or an id that is not a UUID (404), a method the path does not
/// take (405), a query or route value that does not parse (400, <see cref="RouteHandlerOptions.ThrowOnBadRequest"/>
/// turns those into <see cref="BadHttpRequestException"/>s, whose message names the parameter and the value). They had
/// a status and an empty body. The device HTTP API (<c>/api/v1/{token}</c>) keeps the reference's bare statuses, binding
/// failures included.
/// </summary>
internal static class RestErrorBodies
{
    private const int MaxPathInMessage = 200;

    public static IApplicationBuilder UseRestErrorBodies(this IApplicationBuilder app) => app.Use(next => context =>
    {
        // StartsWithSegments without the remainder: its out overload allocates the rest of the path.
        var path = context.Request.Path;
        if (!path.StartsWithSegments("/api", StringComparison.OrdinalIgnoreCase))
        {
            return next(context);
        }

        bool device = path.StartsWithSegments("/api/v1", StringComparison.OrdinalIgnoreCase);
        Task task;
        try
        {
            task = next(context);
        }
        catch (BadHttpRequestException e)
        {
            return WriteAsync(context, e, device);
        }

        // Routing's own answers (no endpoint, a method the path does not take) and the binding failures complete
        // synchronously. An endpoint that goes asynchronous writes its own error bodies (ApiError, RestBody, 413
        // included), so it is returned as it is: no frame per request (an async frame here cost 230 B per REST RPC).
        if (task.IsCompletedSuccessfully)
        {
            return CompleteAsync(context, device);
        }

        return task.IsFaulted && task.Exception.InnerException is BadHttpRequestException bad ? WriteAsync(context, bad, device) : task;
    });

    private static Task CompleteAsync(HttpContext context, bool device)
    {
        var response = context.Response;
        if (device || response.HasStarted || response.StatusCode < 400 || context.Features.Get<IHttpUpgradeFeature>() is { IsUpgradableRequest: true })
        {
            return Task.CompletedTask;
        }

        var request = context.Request;
        string path = request.Path.Value is { Length: > MaxPathInMessage } full ? full[..MaxPathInMessage] + "..." : request.Path.Value ?? "";
        return response.StatusCode switch
        {
            404 => ApiError.WriteAsync(context, 404, $"No API endpoint serves {request.Method} {path} (ids in paths are UUIDs)", ErrorCode.ItemNotFound),
            405 => ApiError.WriteAsync(context, 405, $"Request method '{request.Method}' is not supported for {path}", ErrorCode.BadRequestParams),
            int status => ApiError.WriteAsync(context, status, ReasonPhrases.GetReasonPhrase(status) is { Length: > 0 } phrase ? phrase : "Error", ErrorCode.General),
        };
    }

    private static Task WriteAsync(HttpContext context, BadHttpRequestException e, bool device)
    {
        if (context.Response.HasStarted)
        {
            return Task.FromException(e);
        }

        if (device)
        {
            // The device API's bare status, as before ThrowOnBadRequest.
            context.Response.StatusCode = e.StatusCode;
            return Task.CompletedTask;
        }

        return ApiError.WriteAsync(context, e.StatusCode, e.Message, e.StatusCode == 400 ? ErrorCode.BadRequestParams : ErrorCode.General);
    }
}
