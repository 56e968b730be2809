using System.Buffers;
using System.Text.Json;
using Perf.Core;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>JSON bodies the door sends and the few small request bodies it reads.</summary>
internal static class MqttJson
{
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

    /// <summary><c>{"client":{...},"shared":{...}}</c>.</summary>
    public static void WriteAttributesReply(Utf8JsonWriter w, AttributesReply reply)
    {
        w.WriteStartObject();
        WriteScope(w, "client", reply.Client);
        WriteScope(w, "shared", reply.Shared);
        w.WriteEndObject();
    }

    private static void WriteScope(Utf8JsonWriter w, string name, IReadOnlyList<AttributeKv> values)
    {
        w.WriteStartObject(name);
        for (int i = 0; i < values.Count; i++)
        {
            WriteValue(w, values[i].Entry);
        }

        w.WriteEndObject();
    }

    /// <summary><c>{"method":..,"params":..}</c>, with an <c>"id"</c> first when <paramref name="withId"/> (gateway form).</summary>
    public static void WriteRpcRequest(Utf8JsonWriter w, RpcRequest request, bool withId)
    {
        w.WriteStartObject();
        if (withId)
        {
            w.WriteNumber("id", request.RequestId);
        }

        w.WriteString("method", request.Method);
        w.WritePropertyName("params");
        w.WriteRawValue(string.IsNullOrWhiteSpace(request.ParamsJson) ? "{}" : request.ParamsJson);
        w.WriteEndObject();
    }

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
