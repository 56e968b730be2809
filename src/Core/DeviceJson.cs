using System.Buffers;
using System.Text.Json;
using Perf.Core.Telemetry;

namespace Perf.Core;

/// <summary>
/// The device API's JSON bodies in the reference's shapes, shared by every door that sends them: attribute
/// pushes, RPC requests, attribute replies. The <c>Write*</c> methods write into a caller's (pooled) writer and
/// allocate nothing; the others return a new array for doors that send whole messages (CoAP, HTTP device API).
/// </summary>
public static class DeviceJson
{
    /// <summary>One entry as <c>"key":value</c>, the value typed as the reference writes it (doubles as Java does).</summary>
    public static void WriteValue(Utf8JsonWriter w, in KvEntry e)
    {
        switch (e.Type)
        {
            case DataType.Boolean: w.WriteBoolean(e.Key, e.BooleanValue); break;
            case DataType.Long: w.WriteNumber(e.Key, e.LongValue); break;
            case DataType.Double: JavaNumbers.WriteNumber(w, e.Key, e.DoubleValue); break;
            case DataType.Json:
                w.WritePropertyName(e.Key);
                w.WriteRawValue(e.Text ?? "null");
                break;
            default: w.WriteString(e.Key, e.Text); break;
        }
    }

    /// <summary><c>{"k":v,...}</c>.</summary>
    public static void WriteValues(Utf8JsonWriter w, IReadOnlyList<KvEntry> entries)
    {
        w.WriteStartObject();
        for (int i = 0; i < entries.Count; i++)
        {
            WriteValue(w, entries[i]);
        }

        w.WriteEndObject();
    }

    /// <summary><c>{"k":v,...,"deleted":[...]}</c> (the reference's shared-attribute update push).</summary>
    public static void WriteAttributeUpdate(Utf8JsonWriter w, IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted)
    {
        w.WriteStartObject();
        for (int i = 0; i < updated.Count; i++)
        {
            WriteValue(w, updated[i]);
        }

        if (deleted.Count > 0)
        {
            w.WriteStartArray("deleted");
            for (int i = 0; i < deleted.Count; i++)
            {
                w.WriteStringValue(deleted[i]);
            }

            w.WriteEndArray();
        }

        w.WriteEndObject();
    }

    /// <summary>
    /// <c>{"client":{...},"shared":{...}}</c>. As the reference's <c>JsonConverter.toJson(GetAttributeResponseMsg)</c>,
    /// a scope with no values is left out, so nothing found is <c>{}</c>.
    /// </summary>
    public static void WriteAttributesReply(Utf8JsonWriter w, AttributesReply reply)
    {
        w.WriteStartObject();
        WriteScope(w, "client"u8, reply.Client);
        WriteScope(w, "shared"u8, reply.Shared);
        w.WriteEndObject();
    }

    /// <summary><c>{"method":..,"params":..}</c>, with an <c>"id"</c> first when <paramref name="withId"/>.</summary>
    public static void WriteRpcRequest(Utf8JsonWriter w, RpcRequest request, bool withId)
    {
        w.WriteStartObject();
        if (withId)
        {
            w.WriteNumber("id"u8, request.RequestId);
        }

        w.WriteString("method"u8, request.Method);
        w.WritePropertyName("params"u8);
        w.WriteRawValue(string.IsNullOrWhiteSpace(request.ParamsJson) ? "{}" : request.ParamsJson);
        w.WriteEndObject();
    }

    /// <summary><c>{"k":v,...,"deleted":[...]}</c>.</summary>
    public static byte[] AttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted) =>
        Write(w => WriteAttributeUpdate(w, updated, deleted));

    /// <summary><c>{"id":n,"method":..,"params":..}</c>: the reference's RPC request (CoAP notification, HTTP long-poll reply).</summary>
    public static byte[] RpcRequest(RpcRequest request) => Write(w => WriteRpcRequest(w, request, withId: true));

    /// <summary><c>{"client":{...},"shared":{...}}</c>, empty scopes left out.</summary>
    public static byte[] AttributesReply(AttributesReply reply) => Write(w => WriteAttributesReply(w, reply));

    /// <summary>The current shared attributes as a flat object: the first response of an attributes observation.</summary>
    public static byte[] SharedAttributes(AttributesReply reply) => Write(w =>
    {
        w.WriteStartObject();
        for (int i = 0; i < reply.Shared.Count; i++)
        {
            WriteValue(w, reply.Shared[i].Entry);
        }

        w.WriteEndObject();
    });

    private static void WriteScope(Utf8JsonWriter w, ReadOnlySpan<byte> name, IReadOnlyList<AttributeKv> values)
    {
        if (values.Count == 0)
        {
            return;
        }

        w.WriteStartObject(name);
        for (int i = 0; i < values.Count; i++)
        {
            WriteValue(w, values[i].Entry);
        }

        w.WriteEndObject();
    }

    private static byte[] Write(Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            body(w);
        }

        return buffer.WrittenSpan.ToArray();
    }
}
