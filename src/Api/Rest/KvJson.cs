using System.Text.Json;
using System.Text.Json.Nodes;
using Perf.Core.Telemetry;

namespace Perf.Api.Rest;

/// <summary>Renders typed values the way the reference's REST API does.</summary>
public static class KvJson
{
    /// <summary>The value as JSON: typed when <paramref name="strict"/>, else a string (the reference's default for time series).</summary>
    public static JsonNode? Value(in KvEntry entry, bool strict)
    {
        if (!strict)
        {
            return JsonValue.Create(entry.ValueAsString());
        }

        return entry.Type switch
        {
            DataType.Boolean => JsonValue.Create(entry.BooleanValue),
            DataType.Long => JsonValue.Create(entry.LongValue),
            DataType.Double when double.IsFinite(entry.DoubleValue) => JsonNode.Parse(JavaNumbers.Format(entry.DoubleValue)), // 42.0, as the reference
            DataType.Double => JsonValue.Create(entry.ValueAsString()),
            DataType.Json => ParseOrString(entry.Text),
            _ => JsonValue.Create(entry.Text),
        };
    }

    private static JsonNode? ParseOrString(string? text)
    {
        try
        {
            return text is null ? null : JsonNode.Parse(text);
        }
        catch (JsonException)
        {
            return JsonValue.Create(text);
        }
    }

    /// <summary>Splits a comma-separated key list; null or empty means all keys.</summary>
    public static string[]? Keys(string? csv) =>
        string.IsNullOrWhiteSpace(csv) ? null : csv.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
