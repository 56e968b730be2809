using System.Buffers.Binary;
using Perf.Api.Edge.Protos;
using Perf.Api.Edge.Protos.Transport;
using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Api.Edge;

/// <summary>Conversions between the wire's types and the core's.</summary>
internal static class EdgeProto
{
    public const string DeviceEntityType = "DEVICE";

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

    public static KvEntry ToKv(KeyValueProto kv, KeyTable keys)
    {
        var key = keys.Intern(kv.Key);
        return kv.Type switch
        {
            KeyValueType.BooleanV => new KvEntry(key, kv.BoolV),
            KeyValueType.LongV => new KvEntry(key, kv.LongV),
            KeyValueType.DoubleV => new KvEntry(key, kv.DoubleV),
            KeyValueType.JsonV => new KvEntry(key, kv.JsonV, isJson: true),
            _ => new KvEntry(key, kv.StringV),
        };
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
}
