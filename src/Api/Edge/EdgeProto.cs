using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Nodes;
using Perf.Api.Edge.Protos;
using Perf.Api.Edge.Protos.Transport;
using Perf.Api.Rest;
using Perf.Core;
using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Api.Edge;

/// <summary>Conversions between the wire's types and the core's.</summary>
internal static class EdgeProto
{
    public const string DeviceEntityType = "DEVICE";

    private static readonly JsonDocumentOptions EntityOptions = new() { AllowDuplicateProperties = false };

    /// <summary>UUIDs travel as the most and least significant 64 bits of the RFC 4122 (big-endian) form, as Java's UUID has them.</summary>
    public static (long Msb, long Lsb) Split(Guid id)
    {
        Span<byte> bytes = stackalloc byte[16];
        id.TryWriteBytes(bytes, bigEndian: true, out _);
        return (BinaryPrimitives.ReadInt64BigEndian(bytes), BinaryPrimitives.ReadInt64BigEndian(bytes[8..]));
    }

    public static Guid Join(long msb, long lsb)
    {
        Span<byte> bytes = stackalloc byte[16];
        BinaryPrimitives.WriteInt64BigEndian(bytes, msb);
        BinaryPrimitives.WriteInt64BigEndian(bytes[8..], lsb);
        return new Guid(bytes, bigEndian: true);
    }

    public static EdgeConfiguration Configuration(Perf.Core.Domain.Edge edge)
    {
        var (edgeMsb, edgeLsb) = Split(edge.Id);
        var (tenantMsb, tenantLsb) = Split(edge.TenantId);
        var (customerMsb, customerLsb) = Split(edge.CustomerId == Guid.Empty ? Rest.EntityJson.NullUid : edge.CustomerId);
        return new EdgeConfiguration
        {
            EdgeIdMSB = edgeMsb,
            EdgeIdLSB = edgeLsb,
            TenantIdMSB = tenantMsb,
            TenantIdLSB = tenantLsb,
            CustomerIdMSB = customerMsb,
            CustomerIdLSB = customerLsb,
            Name = edge.Name,
            Type = edge.Type,
            RoutingKey = edge.RoutingKey,
            Secret = edge.Secret,
            AdditionalInfo = "{}",
            CloudType = "CE",
        };
    }

    /// <summary>One key/value of an edge payload as the core holds it; false with the reason when it cannot be.</summary>
    public static bool TryToKv(KeyValueProto kv, KeyTable keys, out KvEntry entry, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        // The same guarantees the JSON parser gives for device payloads (found by tests/Fuzz: without them a NaN or a
        // JsonV that is not JSON was stored, and the MQTT/CoAP/REST renderers that write it threw or sent broken JSON).
        entry = default;
        if (kv.Key.Length == 0)
        {
            error = "empty key";
            return false;
        }
        if (kv.Type == KeyValueType.DoubleV && !double.IsFinite(kv.DoubleV))
        {
            error = $"non-finite double_v for key '{kv.Key}'";
            return false;
        }
        if (kv.Type == KeyValueType.JsonV && !Rest.RestBody.IsJson(kv.JsonV))
        {
            error = $"json_v for key '{kv.Key}' is not JSON";
            return false;
        }
        var key = keys.Intern(kv.Key);
        entry = kv.Type switch
        {
            KeyValueType.BooleanV => new KvEntry(key, kv.BoolV),
            KeyValueType.LongV => new KvEntry(key, kv.LongV),
            KeyValueType.DoubleV => new KvEntry(key, kv.DoubleV),
            KeyValueType.JsonV => new KvEntry(key, kv.JsonV, isJson: true),
            _ => new KvEntry(key, kv.StringV),
        };
        error = null;
        return true;
    }

    private static bool TryGetString(JsonObject json, string field, out string? value, out string? error)
    {
        value = null;
        error = null;
        switch (json[field])
        {
            case null:
                return true;
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                try
                {
                    value = v.GetValue<string>();
                }
                catch (InvalidOperationException)
                {
                    // An escaped lone surrogate ("\ud800") parses but cannot become a string (found by tests/Fuzz).
                    error = $"device entity '{field}' is not valid UTF-16 text";
                    return false;
                }

                return true;
            case var other:
                error = $"device entity '{field}' must be a string, not {other.GetValueKind()}";
                return false;
        }
    }

    public static KeyValueProto FromKv(in KvEntry kv)
    {
        var proto = new KeyValueProto { Key = kv.Key };
        switch (kv.Type)
        {
            case DataType.Boolean:
                proto.Type = KeyValueType.BooleanV;
                proto.BoolV = kv.BooleanValue;
                break;
            case DataType.Long:
                proto.Type = KeyValueType.LongV;
                proto.LongV = kv.LongValue;
                break;
            case DataType.Double:
                proto.Type = KeyValueType.DoubleV;
                proto.DoubleV = kv.DoubleValue;
                break;
            case DataType.Json:
                proto.Type = KeyValueType.JsonV;
                proto.JsonV = kv.Text ?? string.Empty;
                break;
            default:
                proto.Type = KeyValueType.StringV;
                proto.StringV = kv.Text ?? string.Empty;
                break;
        }
        return proto;
    }

    /// <summary>The reference's scope names (CLIENT_SCOPE, SERVER_SCOPE, SHARED_SCOPE).</summary>
    public static AttributeScope? Scope(string? name, AttributeScope fallback) => name switch
    {
        null or "" => fallback,
        "CLIENT_SCOPE" => AttributeScope.Client,
        "SERVER_SCOPE" => AttributeScope.Server,
        "SHARED_SCOPE" => AttributeScope.Shared,
        _ => null,
    };

    public static string ScopeName(AttributeScope scope) => scope switch
    {
        AttributeScope.Client => "CLIENT_SCOPE",
        AttributeScope.Server => "SERVER_SCOPE",
        _ => "SHARED_SCOPE",
    };

    /// <summary>Appends a PostTelemetryMsg's entries; a list without a positive ts is stamped <paramref name="nowMs"/>. False at the first unusable key/value.</summary>
    public static bool TryAddTelemetry(List<TsKvEntry> entries, PostTelemetryMsg msg, KeyTable keys, long nowMs, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        var start = entries.Count;
        foreach (var list in msg.TsKvList)
        {
            var ts = list.Ts > 0 ? list.Ts : nowMs;
            foreach (var kv in list.Kv)
            {
                if (!TryToKv(kv, keys, out var entry, out error))
                {
                    entries.RemoveRange(start, entries.Count - start);
                    return false;
                }
                entries.Add(new TsKvEntry(ts, entry));
            }
        }
        error = null;
        return true;
    }

    /// <summary>The RPC reply as the REST caller sees it: the response JSON, or {"error":...}.</summary>
    /// <summary>
    /// The outcome of an edge's RPC error, as the reference's AbstractRpcController reads its RpcError:
    /// NO_ACTIVE_CONNECTION answers 409, TIMEOUT and anything else the call's timeout.
    /// </summary>
    public static RpcStatus RpcFailure(string error) =>
        error == "NO_ACTIVE_CONNECTION" ? RpcStatus.NoActiveConnection : RpcStatus.Timeout;

    /// <summary>A client-side RPC of a device behind the edge as the device API takes it: {"method":..,"params":..}; params that are not JSON travel as a string.</summary>
    public static byte[] ClientRpcRequest(RpcRequestMsg request)
    {
        JsonNode? parameters;
        try
        {
            parameters = string.IsNullOrWhiteSpace(request.Params) ? new JsonObject() : JsonNode.Parse(request.Params);
        }
        catch (JsonException)
        {
            parameters = JsonValue.Create(request.Params);
        }
        try
        {
            return JsonSerializer.SerializeToUtf8Bytes(new JsonObject { ["method"] = request.Method, ["params"] = parameters });
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // Params that parse but cannot be written back (an escaped lone surrogate, found by tests/Fuzz) travel as a string.
            return JsonSerializer.SerializeToUtf8Bytes(new JsonObject { ["method"] = request.Method, ["params"] = JsonValue.Create(request.Params) });
        }
    }

    /// <summary>The device fields of a DeviceUpdateMsg's entity JSON; false with a reason the edge is told when they are unusable.</summary>
    public static bool TryReadDeviceEntity(string entity, out EdgeDeviceEntity device, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        device = default;
        JsonObject? json;
        try
        {
            // Duplicate keys are a parse error here: JsonObject's indexer threw ArgumentException for them (found by tests/Fuzz).
            json = JsonNode.Parse(entity, documentOptions: EntityOptions) as JsonObject;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: the duplicate-key check unescapes each key, and a lone surrogate escape in
            // one (\ud800) cannot be read as a string (found by tests/Fuzz).
            error = "device entity is not JSON: " + e.Message;
            return false;
        }
        if (json is null)
        {
            error = "device entity has no name";
            return false;
        }
        // Each field is a JSON string or absent/null; GetValue<string> threw InvalidOperationException for any other
        // kind (found by tests/Fuzz), which reached the edge as a runtime message instead of a reason.
        if (!TryGetString(json, "name", out var name, out var fieldError) || !TryGetString(json, "type", out var type, out fieldError) ||
            !TryGetString(json, "label", out var label, out fieldError))
        {
            error = fieldError!;
            return false;
        }
        if (string.IsNullOrWhiteSpace(name))
        {
            error = "device entity has no name";
            return false;
        }
        string? info;
        try
        {
            info = json["additionalInfo"] is JsonObject o ? o.ToJsonString() : null;
        }
        catch (Exception e) when (e is InvalidOperationException or JsonException)
        {
            // An escaped lone surrogate inside additionalInfo parses but cannot be written back (found by tests/Fuzz).
            error = "device entity 'additionalInfo' is not valid UTF-16 text";
            return false;
        }

        device = new EdgeDeviceEntity(name, type, label, info);
        error = null;
        return true;
    }

    /// <summary>
    /// Reads a <c>DeviceCredentialsUpdateMsg</c> entity: <c>{"deviceId":{"id":..},"credentialsType":..,"credentialsId":..,
    /// "credentialsValue":..}</c>; a MQTT_BASIC value may be a JSON object or its text.
    /// </summary>
    public static bool TryReadCredentialsEntity(string entity, out EdgeCredentialsEntity credentials, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? error)
    {
        credentials = default;
        JsonObject? json;
        Guid? deviceId;
        try
        {
            json = JsonNode.Parse(entity, documentOptions: EntityOptions) as JsonObject;
            deviceId = json is null ? null : EntityJson.ReadId(json["deviceId"]);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: a deviceId whose id is not a string, or a key with a lone surrogate escape.
            error = "device credentials entity is not JSON with a deviceId: " + e.Message;
            return false;
        }
        if (json is null || deviceId is null || deviceId == Guid.Empty)
        {
            error = "device credentials entity has no deviceId";
            return false;
        }
        if (!TryGetString(json, "credentialsType", out var type, out var fieldError) || !TryGetString(json, "credentialsId", out var id, out fieldError))
        {
            error = fieldError!;
            return false;
        }
        string? value;
        try
        {
            value = json["credentialsValue"] is JsonObject o ? o.ToJsonString() : null;
            if (value is null && !TryGetString(json, "credentialsValue", out value, out var valueError))
            {
                error = valueError!;
                return false;
            }
        }
        catch (Exception e) when (e is InvalidOperationException or JsonException)
        {
            error = "device credentials entity 'credentialsValue' is not valid UTF-16 text";
            return false;
        }

        credentials = new EdgeCredentialsEntity(deviceId.Value, string.IsNullOrEmpty(type) ? EntityRegistry.AccessToken : type, id, value);
        error = null;
        return true;
    }
}

/// <summary>What the server takes from an edge's device credentials entity (the reference's DeviceCredentials JSON).</summary>
internal readonly record struct EdgeCredentialsEntity(Guid DeviceId, string Type, string? CredentialsId, string? CredentialsValue);

/// <summary>What the server takes from an edge's device entity.</summary>
internal readonly record struct EdgeDeviceEntity(string Name, string? Type, string? Label, string? AdditionalInfo);
