using System.Text.Json;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// Reads the reference's uplink converter output: one object or an array of objects
/// <c>{deviceName, deviceType, ts?, telemetry, attributes}</c>. <c>telemetry</c> is any form
/// <see cref="TelemetryJsonParser"/> accepts (flat, <c>{ts,values}</c>, arrays); a top-level <c>ts</c>
/// stamps flat telemetry. Other keys (customerName, groupName...) are ignored.
/// </summary>
internal static class UplinkOutputReader
{
    public static bool TryRead(ReadOnlySpan<byte> json, long nowTs, KeyTable keys, UplinkBatch output, out string? error)
    {
        try
        {
            var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = 64 });
            if (!reader.Read())
            {
                error = "converter output is empty";
                return false;
            }

            if (reader.TokenType == JsonTokenType.StartObject)
            {
                return TryReadMessage(ref reader, json, nowTs, keys, output, out error);
            }

            if (reader.TokenType != JsonTokenType.StartArray)
            {
                error = "converter output must be an object or an array of objects";
                return false;
            }

            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                if (reader.TokenType != JsonTokenType.StartObject)
                {
                    error = "converter output array holds a non-object";
                    return false;
                }

                if (!TryReadMessage(ref reader, json, nowTs, keys, output, out error))
                {
                    return false;
                }
            }

            error = null;
            return true;
        }
        catch (JsonException ex)
        {
            error = "converter output is not valid JSON: " + ex.Message;
            return false;
        }
    }

    private static bool TryReadMessage(ref Utf8JsonReader reader, ReadOnlySpan<byte> json, long nowTs, KeyTable keys, UplinkBatch output, out string? error)
    {
        var message = output.Add();
        string? name = null;
        string? type = null;
        long ts = nowTs;
        Range telemetry = default;
        Range attributes = default;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            if (reader.ValueTextEquals("deviceName"u8))
            {
                reader.Read();
                name = ScalarText(ref reader);
            }
            else if (reader.ValueTextEquals("deviceType"u8))
            {
                reader.Read();
                type = ScalarText(ref reader);
            }
            else if (reader.ValueTextEquals("ts"u8))
            {
                reader.Read();
                if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out long value))
                {
                    ts = value;
                }
            }
            else if (reader.ValueTextEquals("telemetry"u8))
            {
                reader.Read();
                telemetry = ValueRange(ref reader);
            }
            else if (reader.ValueTextEquals("attributes"u8))
            {
                reader.Read();
                attributes = ValueRange(ref reader);
            }
            else
            {
                reader.Read();
                reader.Skip();
            }
        }

        if (string.IsNullOrEmpty(name))
        {
            error = "deviceName is empty or undefined";
            return false;
        }

        message.DeviceName = name;
        message.DeviceType = string.IsNullOrEmpty(type) ? "default" : type;
        if (!telemetry.Equals(default(Range)) &&
            !TelemetryJsonParser.TryParseTelemetry(json[telemetry], ts, keys, message.Telemetry, out var telemetryError))
        {
            error = $"telemetry of {name}: {telemetryError}";
            return false;
        }

        if (!attributes.Equals(default(Range)) &&
            !TelemetryJsonParser.TryParseAttributes(json[attributes], keys, message.Attributes, out var attributeError))
        {
            error = $"attributes of {name}: {attributeError}";
            return false;
        }

        error = null;
        return true;
    }

    private static string? ScalarText(ref Utf8JsonReader reader) => reader.TokenType switch
    {
        JsonTokenType.String => reader.GetString(),
        JsonTokenType.Number => System.Text.Encoding.UTF8.GetString(reader.ValueSpan),
        JsonTokenType.StartObject or JsonTokenType.StartArray => SkipNull(ref reader),
        _ => null,
    };

    private static string? SkipNull(ref Utf8JsonReader reader)
    {
        reader.Skip();
        return null;
    }

    // The byte range of the value under the reader (null: none), for the typed KV parser.
    private static Range ValueRange(ref Utf8JsonReader reader)
    {
        if (reader.TokenType == JsonTokenType.Null)
        {
            return default;
        }

        int start = (int)reader.TokenStartIndex;
        reader.Skip();
        return new Range(start, (int)reader.BytesConsumed);
    }
}
