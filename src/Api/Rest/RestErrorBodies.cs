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

    public static IApplicationBuilder UseRestErrorBodies(this IApplicationBuilder app)
    {
        var logger = app.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger("Perf.Api.Rest");
        return app.Use(next => context => Serve(next, context, logger));
    }

    private static Task Serve(RequestDelegate next, HttpContext context, ILogger logger)
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
        catch (Exception e) when (Answerable(context, e))
        {
            return WriteFailureAsync(context, e, device, logger);
        }

        // Routing's own answers (no endpoint, a method the path does not take) and the binding failures complete
        // synchronously, and get their bodies here. An endpoint writes its own error bodies (ApiError, RestBody, 413
        // included); only a failure that escapes it is answered here. An endpoint that completes at once costs no frame;
        // one still at work is awaited (one async frame, about 230 B, per such call: a store write, a two-way RPC).
        if (task.IsCompletedSuccessfully)
        {
            return CompleteAsync(context, device);
        }

        if (!task.IsCompleted)
        {
            // An endpoint still at work (a store write, a two-way RPC): awaited here so that a failure gets its body.
            return AwaitAsync(task, context, device, logger);
        }

        return task.Exception?.InnerException switch
        {
            BadHttpRequestException bad => WriteAsync(context, bad, device),
            { } failure when Answerable(context, failure) => WriteFailureAsync(context, failure, device, logger),
            _ => task,
        };
    }

    private static async Task AwaitAsync(Task task, HttpContext context, bool device, ILogger logger)
    {
        try
        {
            await task;
        }
        catch (BadHttpRequestException e)
        {
            await WriteAsync(context, e, device);
        }
        catch (Exception e) when (Answerable(context, e))
        {
            await WriteFailureAsync(context, e, device, logger);
        }
    }

    /// <summary>
    /// Whether a failure that escaped an endpoint gets an answer here: not once the response has started (the
    /// connection is then aborted by the server, as before), and not for a request its client gave up on.
    /// </summary>
    private static bool Answerable(HttpContext context, Exception e) =>
        !context.Response.HasStarted && !(e is OperationCanceledException && context.RequestAborted.IsCancellationRequested);

    /// <summary>
    /// A failure no endpoint answered is 500 with the JSON error body (the device API: the bare status), as the
    /// reference answers its internal errors; storage that could not write (an <see cref="IOException"/>: the change
    /// was not made) says so. The log line names the request and the cause; the body names no path or detail of the
    /// server.
    /// </summary>
    private static Task WriteFailureAsync(HttpContext context, Exception e, bool device, ILogger logger)
    {
        var request = context.Request;
        bool storage = e is IOException;
        string path = request.Path.Value ?? "";
        if (device)
        {
            // The device API's path holds the device's access token: the log names the route, not the token.
            int route = path.IndexOf('/', "/api/v1/".Length);
            path = "/api/v1/{token}" + (route < 0 ? "" : path[route..]);
        }
        path = path.Length > MaxPathInMessage ? path[..MaxPathInMessage] + "..." : path;
        if (storage)
        {
            RestLog.StorageFailed(logger, request.Method, path, e.Message);
        }
        else
        {
            RestLog.RequestFailed(logger, request.Method, path, e);
        }

        const int status = StatusCodes.Status500InternalServerError;
        context.Response.Clear();
        if (device)
        {
            context.Response.StatusCode = status;
            return Task.CompletedTask;
        }

        return ApiError.WriteAsync(context, status,
            storage ? "Storage is unavailable: the request was not carried out. Retry later." : "Internal server error",
            ErrorCode.General);
    }

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

internal static partial class RestLog
{
    [LoggerMessage(EventId = 40, Level = LogLevel.Error, Message = "REST {Method} {Path} failed: storage is unavailable ({Reason}); answered 500")]
    public static partial void StorageFailed(ILogger logger, string method, string path, string reason);

    [LoggerMessage(EventId = 41, Level = LogLevel.Error, Message = "REST {Method} {Path} failed; answered 500")]
    public static partial void RequestFailed(ILogger logger, string method, string path, Exception error);
}
