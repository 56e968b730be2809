namespace Perf.Api.Rest;

/// <summary>The reference platform's error codes (ThingsBoardErrorCode).</summary>
public enum ErrorCode
{
    General = 2,
    Authentication = 10,
    JwtTokenExpired = 11,
    PermissionDenied = 20,
    InvalidArguments = 30,
    BadRequestParams = 31,
    ItemNotFound = 32,
    TooManyRequests = 33,
}

/// <summary>Every REST error answers <c>{"status","message","errorCode","timestamp"}</c>.</summary>
public static class ApiError
{
    public static IResult Of(int status, string message, ErrorCode code) =>
        Results.Json(new ErrorBody(status, message, (int)code, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()), statusCode: status);

    public static IResult BadRequest(string message) => Of(400, message, ErrorCode.BadRequestParams);
    public static IResult InvalidArguments(string message) => Of(400, message, ErrorCode.InvalidArguments);
    public static IResult Unauthorized(string message) => Of(401, message, ErrorCode.Authentication);
    public static IResult Forbidden(string message = "You don't have permission to perform this operation!") => Of(403, message, ErrorCode.PermissionDenied);
    public static IResult NotFound(string message = "Requested item wasn't found!") => Of(404, message, ErrorCode.ItemNotFound);
    public static IResult Conflict(string message) => Of(409, message, ErrorCode.InvalidArguments);
    public static IResult TooLarge(string message) => Of(413, message, ErrorCode.BadRequestParams);

    public static Task WriteAsync(HttpContext context, int status, string message, ErrorCode code) =>
        WriteCoreAsync(context, new ErrorBody(status, message, (int)code, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));

    private static Task WriteCoreAsync(HttpContext context, ErrorBody body)
    {
        context.Response.StatusCode = body.Status;
        return context.Response.WriteAsJsonAsync(body, context.RequestAborted);
    }

    public sealed record ErrorBody(int Status, string Message, int ErrorCode, long Timestamp);
}
