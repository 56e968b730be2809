using System.Buffers;
using System.Text.Json;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>The few small request bodies the door reads itself; the bodies it sends are Core's <see cref="Perf.Core.DeviceJson"/>.</summary>
internal static class MqttJson
{
    /// <summary>Reads <c>{"clientKeys":"a,b","sharedKeys":"c,d"}</c>; a missing list is null (Core applies the reference's rule).</summary>
    public static void ReadAttributeRequest(ReadOnlySequence<byte> json, out IReadOnlyList<string>? clientKeys, out IReadOnlyList<string>? sharedKeys)
    {
        clientKeys = sharedKeys = null;
        if (json.IsEmpty)
        {
            return;
        }

        var r = new Utf8JsonReader(json);
        if (!r.Read() || r.TokenType != JsonTokenType.StartObject)
        {
            return;
        }

        while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
        {
            bool client = r.ValueTextEquals("clientKeys"u8);
            bool shared = r.ValueTextEquals("sharedKeys"u8);
            r.Read();
            if ((client || shared) && r.TokenType == JsonTokenType.String)
            {
                var keys = Split(r.GetString());
                if (client)
                {
                    clientKeys = keys;
                }
                else
                {
                    sharedKeys = keys;
                }
            }
            else
            {
                r.Skip();
            }
        }
    }

    private static string[] Split(string? list) =>
        string.IsNullOrEmpty(list) ? [] : list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
