using System.Text.Json;
using System.Text.Json.Serialization;

namespace Perf.Kestrel.Tcp;

/// <summary>
/// Reads the reference platform's entities into our configuration, so the REST layer can accept
/// <c>POST /api/integration</c> and <c>POST /api/converter</c> bodies as users export them:
/// integration <c>{"name","type":"TCP","enabled","allowCreateDevicesOrAssets","debugMode",
/// "defaultConverterId":{"id"},"downlinkConverterId":{"id"},"configuration":{"clientConfiguration":{...},"metadata":{}}}</c>,
/// converter <c>{"name","type":"UPLINK"|"DOWNLINK","configuration":{"scriptLang":"JS","decoder"|"encoder"}}</c>.
/// Unknown properties are ignored; numbers may arrive as strings (the reference UI sends both).
/// </summary>
public static class TcpReferenceJson
{
    /// <summary>camelCase, case-insensitive, numbers from strings: the shape the reference's REST API uses.</summary>
    public static JsonSerializerOptions SerializerOptions { get; } = new(JsonSerializerDefaults.Web)
    {
        NumberHandling = JsonNumberHandling.AllowReadingFromString,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>A converter entity's <c>configuration</c> object.</summary>
    /// <exception cref="JsonException">The JSON does not have the converter configuration's shape.</exception>
    public static TcpConverterConfiguration ReadConverterConfiguration(JsonElement configuration) =>
        configuration.Deserialize<TcpConverterConfiguration>(SerializerOptions) ?? throw new JsonException("converter configuration is null");

    /// <summary>An integration entity, with its converters already resolved from defaultConverterId / downlinkConverterId.</summary>
    /// <exception cref="JsonException">The JSON does not have the integration's shape, or its type is not TCP.</exception>
    public static TcpIntegrationOptions ReadIntegration(JsonElement integration, TcpConverterConfiguration uplinkConverter, TcpConverterConfiguration? downlinkConverter)
    {
        if (integration.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String && !string.Equals(type.GetString(), "TCP", StringComparison.OrdinalIgnoreCase))
        {
            throw new JsonException($"integration type {type.GetString()} is not TCP");
        }

        var options = new TcpIntegrationOptions
        {
            UplinkConverter = uplinkConverter,
            DownlinkConverter = downlinkConverter,
        };
        if (integration.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String)
        {
            options.Name = name.GetString()!;
        }

        options.Enabled = Flag(integration, "enabled", options.Enabled);
        options.AllowCreateDevicesOrAssets = Flag(integration, "allowCreateDevicesOrAssets", options.AllowCreateDevicesOrAssets);
        options.DebugMode = Flag(integration, "debugMode", options.DebugMode);
        if (integration.TryGetProperty("configuration", out var configuration) && configuration.ValueKind == JsonValueKind.Object)
        {
            if (configuration.TryGetProperty("clientConfiguration", out var client) && client.ValueKind == JsonValueKind.Object)
            {
                options.ClientConfiguration = client.Deserialize<TcpClientConfiguration>(SerializerOptions) ?? new TcpClientConfiguration();
                options.ClientConfiguration.HandlerConfiguration ??= new TcpHandlerConfiguration();
            }

            if (configuration.TryGetProperty("metadata", out var metadata) && metadata.ValueKind == JsonValueKind.Object)
            {
                foreach (var property in metadata.EnumerateObject())
                {
                    options.Metadata[property.Name] = property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString()! : property.Value.GetRawText();
                }
            }
        }

        return options;
    }

    /// <summary>The converter id an integration names under <paramref name="property"/> (defaultConverterId, downlinkConverterId).</summary>
    public static Guid? ConverterId(JsonElement integration, string property) =>
        integration.TryGetProperty(property, out var reference) && reference.ValueKind == JsonValueKind.Object &&
        reference.TryGetProperty("id", out var id) && id.ValueKind == JsonValueKind.String && Guid.TryParse(id.GetString(), out var guid)
            ? guid
            : null;

    private static bool Flag(JsonElement element, string property, bool fallback) =>
        element.TryGetProperty(property, out var value) ? value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => fallback,
        } : fallback;
}
