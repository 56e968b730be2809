using System.Buffers;
using System.Text.Json;
using Perf.Core.Telemetry;

namespace Perf.Core;

/// <summary>
/// The device API's JSON bodies in the reference's shapes, shared by the doors that send them as whole
/// messages (CoAP, HTTP device API): attribute pushes, RPC requests, attribute replies. Off the
/// telemetry hot path: each call returns a new array.
/// </summary>
public static class DeviceJson
{
    /// <summary><c>{"k":v,...,"deleted":[...]}</c>.</summary>
    public static byte[] AttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted) => Write(w =>
    {
        w.WriteStartObject();
        foreach (var e in updated)
        {
            WriteValue(w, e);
        }

        if (deleted.Count > 0)
        {
            w.WriteStartArray("deleted");
            foreach (var key in deleted)
            {
                w.WriteStringValue(key);
            }

            w.WriteEndArray();
        }

        w.WriteEndObject();
    });

    /// <summary><c>{"id":n,"method":..,"params":..}</c>: the reference's RPC request (CoAP notification, HTTP long-poll reply).</summary>
    public static byte[] RpcRequest(RpcRequest request) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteNumber("id", request.RequestId);
        w.WriteString("method", request.Method);
        w.WritePropertyName("params");
        w.WriteRawValue(string.IsNullOrWhiteSpace(request.ParamsJson) ? "{}" : request.ParamsJson);
        w.WriteEndObject();
    });

    /// <summary><c>{"client":{...},"shared":{...}}</c>.</summary>
    public static byte[] AttributesReply(AttributesReply reply) => Write(w =>
    {
        w.WriteStartObject();
        WriteScope(w, "client", reply.Client);
        WriteScope(w, "shared", reply.Shared);
        w.WriteEndObject();
    });

    /// <summary>The current shared attributes as a flat object: the first response of an attributes observation.</summary>
    public static byte[] SharedAttributes(AttributesReply reply) => Write(w =>
    {
        w.WriteStartObject();
        foreach (var a in reply.Shared)
        {
            WriteValue(w, a.Entry);
        }

        w.WriteEndObject();
    });

    private static void WriteScope(Utf8JsonWriter w, string name, IReadOnlyList<AttributeKv> values)
    {
        w.WriteStartObject(name);
        foreach (var a in values)
        {
            WriteValue(w, a.Entry);
        }

        w.WriteEndObject();
    }

    private static void WriteValue(Utf8JsonWriter w, in KvEntry e)
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
