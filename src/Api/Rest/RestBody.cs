using System.Text.Json;
using System.Text.Json.Nodes;

namespace Perf.Api.Rest;

/// <summary>Reads JSON request bodies with a clear 400 (what and where) or 413 instead of an exception.</summary>
public static class RestBody
{
    public static async Task<(JsonNode? Node, IResult? Error)> ReadAsync(HttpRequest request)
    {
        try
        {
            using var buffer = new MemoryStream();
            await request.Body.CopyToAsync(buffer, request.HttpContext.RequestAborted);
            if (buffer.Length == 0)
            {
                return (null, ApiError.BadRequest("Request body is empty: a JSON body is required"));
            }

            var node = JsonNode.Parse(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
            return node is null ? (null, ApiError.BadRequest("Request body is JSON null")) : (node, null);
        }
        catch (JsonException ex)
        {
            return (null, ApiError.BadRequest($"Invalid JSON in request body: {ex.Message}"));
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (null, ApiError.TooLarge("Request body too large"));
        }
    }

    public static async Task<(JsonObject? Object, IResult? Error)> ReadObjectAsync(HttpRequest request)
    {
        var (node, error) = await ReadAsync(request);
        if (error is not null)
        {
            return (null, error);
        }

        return node is JsonObject o ? (o, null) : (null, ApiError.BadRequest("Request body must be a JSON object"));
    }

    public static string? String(JsonObject o, string name) =>
        o[name] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
}
