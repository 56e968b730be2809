using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.Features;

namespace Perf.Api.Rest;

/// <summary>Reads JSON request bodies with a clear 400 (what and where) or 413 instead of an exception.</summary>
public static class RestBody
{
    /// <summary>The largest JSON body a REST endpoint reads (1 MiB); larger bodies answer 413.</summary>
    public const int MaxJsonBodyBytes = 1 << 20;

    /// <summary>The largest declared body length read into an array allocated before its bytes arrive (16 KiB).</summary>
    internal const int MaxPreallocatedBytes = 16 * 1024;

    /// <summary>Reads the whole body (at most <paramref name="maxBytes"/>, declared or chunked); 400 when empty, 413 when larger.</summary>
    public static async Task<(byte[] Bytes, IResult? Error)> ReadBytesAsync(HttpRequest request, int maxBytes = MaxJsonBodyBytes)
    {
        if (request.ContentLength > maxBytes)
        {
            return ([], TooLarge(maxBytes));
        }

        if (request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = maxBytes;
        }

        try
        {
            // A small declared length is read straight into an array of that size. A larger one goes through the
            // stream below, which grows with the bytes that actually arrive: a client that declares a megabyte and
            // sends nothing must not get a megabyte allocated.
            if (request.ContentLength is > 0 and <= MaxPreallocatedBytes and var declared)
            {
                var bytes = new byte[declared];
                await request.Body.ReadExactlyAsync(bytes, request.HttpContext.RequestAborted);
                return (bytes, null);
            }

            using var buffer = new MemoryStream();
            await request.Body.CopyToAsync(buffer, request.HttpContext.RequestAborted);
            return buffer.Length == 0
                ? ([], ApiError.BadRequest("Request body is empty: a JSON body is required"))
                : (buffer.ToArray(), null);
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return ([], TooLarge(maxBytes));
        }
    }

    public static async Task<(JsonNode? Node, IResult? Error)> ReadAsync(HttpRequest request, int maxBytes = MaxJsonBodyBytes)
    {
        var (bytes, error) = await ReadBytesAsync(request, maxBytes);
        if (error is not null)
        {
            return (null, error);
        }

        try
        {
            var node = JsonNode.Parse(bytes);
            return node is null ? (null, JsonNull()) : (node, null);
        }
        catch (JsonException ex)
        {
            return (null, InvalidJson(ex));
        }
    }

    /// <summary>
    /// Reads a JSON object body into a <see cref="JsonDocument"/> (pooled storage, no object per property, for
    /// hot endpoints that only read a few fields); the same 400 and 413 answers as <see cref="ReadObjectAsync"/>.
    /// The caller disposes the document.
    /// </summary>
    public static async Task<(JsonDocument? Document, IResult? Error)> ReadObjectDocumentAsync(HttpRequest request, int maxBytes = MaxJsonBodyBytes)
    {
        var (bytes, error) = await ReadBytesAsync(request, maxBytes);
        if (error is not null)
        {
            return (null, error);
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes);
        }
        catch (JsonException ex)
        {
            return (null, InvalidJson(ex));
        }

        var kind = document.RootElement.ValueKind;
        if (kind == JsonValueKind.Object)
        {
            return (document, null);
        }

        document.Dispose();
        return (null, kind == JsonValueKind.Null ? JsonNull() : NotAnObject());
    }

    private static IResult TooLarge(int maxBytes) => ApiError.TooLarge($"Request body exceeds {maxBytes} bytes");

    private static IResult InvalidJson(JsonException ex) => ApiError.BadRequest($"Invalid JSON in request body: {ex.Message}");

    private static IResult JsonNull() => ApiError.BadRequest("Request body is JSON null");

    private static IResult NotAnObject() => ApiError.BadRequest("Request body must be a JSON object");

    public static async Task<(JsonObject? Object, IResult? Error)> ReadObjectAsync(HttpRequest request, int maxBytes = MaxJsonBodyBytes)
    {
        var (node, error) = await ReadAsync(request, maxBytes);
        if (error is not null)
        {
            return (null, error);
        }

        return node is JsonObject o ? (o, null) : (null, NotAnObject());
    }

    public static string? String(JsonObject o, string name) =>
        o[name] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    public static string? String(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    /// <summary>
    /// Whether <paramref name="text"/> is one JSON value (a device's RPC reply, an edge's JSON value). Read from a
    /// pooled buffer: nothing is allocated per call.
    /// </summary>
    public static bool IsJson(string text)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(System.Text.Encoding.UTF8.GetMaxByteCount(text.Length));
        try
        {
            var reader = new Utf8JsonReader(buffer.AsSpan(0, System.Text.Encoding.UTF8.GetBytes(text, buffer)));
            while (reader.Read())
            {
            }

            return reader.BytesConsumed > 0;
        }
        catch (JsonException)
        {
            return false;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
