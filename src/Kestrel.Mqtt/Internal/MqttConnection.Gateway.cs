using System.Buffers;
using System.Text.Json;
using Perf.Core;
using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>Gateway API: one connection speaks for many child devices (v1/gateway/*).</summary>
internal sealed partial class MqttConnection
{
    private async ValueTask HandleGatewayAsync(TopicRoute route, MqttPacket packet, Device gateway)
    {
        if (!gateway.IsGateway)
        {
            Enqueue(new ValueTask<UplinkResult>(UplinkResult.Success), packet.PacketId, (byte)packet.QoS, route);
            return;
        }

        var payload = packet.Payload;
        switch (route)
        {
            case TopicRoute.GatewayTelemetry or TopicRoute.GatewayAttributes:
                // {"A":[...],"B":[...]}: each device's value bytes go to the core as a slice of the input.
                foreach (var (name, start, length) in SplitByDevice(payload))
                {
                    var child = await GetChildAsync(gateway, name, null);
                    var slice = payload.Slice(start, length);
                    Enqueue(route == TopicRoute.GatewayTelemetry ? _door.Api.PostTelemetryAsync(child.Device, slice) : _door.Api.PostAttributesAsync(child.Device, slice), 0, 0, route);
                }

                break;
            case TopicRoute.GatewayClaim:
                // {"A":{"secretKey":..,"durationMs":..},"B":{...}}: each child's claim, as the device's own claim topic.
                foreach (var (name, start, length) in SplitByDevice(payload))
                {
                    var child = await GetChildAsync(gateway, name, null);
                    Enqueue(_door.Api.ClaimAsync(child.Device, payload.Slice(start, length)), 0, 0, route);
                }

                break;
            case TopicRoute.GatewayConnect:
                if (ReadDeviceHeader(payload, out var connectName, out var type, out _, out _, out _))
                {
                    await GetChildAsync(gateway, connectName, type);
                }

                break;
            case TopicRoute.GatewayDisconnect:
                if (ReadDeviceHeader(payload, out var disconnectName, out _, out _, out _, out _) && _children is not null
                    && _children.Remove(disconnectName, out var gone))
                {
                    _door.Sessions.Unregister(gone);
                }

                break;
            case TopicRoute.GatewayRpc:
                if (ReadDeviceHeader(payload, out var rpcName, out _, out int rpcId, out long dataStart, out long dataLength))
                {
                    var child = await GetChildAsync(gateway, rpcName, null);
                    Enqueue(_door.Api.RpcReplyAsync(child.Device, rpcId, payload.Slice(dataStart, dataLength)), 0, 0, route);
                }

                break;
            case TopicRoute.GatewayAttributeRequest:
                await HandleGatewayAttributeRequestAsync(gateway, payload);
                break;
        }

        Enqueue(new ValueTask<UplinkResult>(UplinkResult.Success), packet.PacketId, (byte)packet.QoS, route);
    }

    private async ValueTask HandleGatewayAttributeRequestAsync(Device gateway, ReadOnlySequence<byte> payload)
    {
        string? name = null;
        int id = 0;
        bool client = false;
        bool multiple = false;
        List<string>? keys = null;
        var r = new Utf8JsonReader(payload);
        try
        {
            r.Read();
            while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
            {
                string prop = r.GetString()!;
                r.Read();
                switch (prop)
                {
                    case "device": name = r.GetString(); break;
                    case "id" when r.TokenType == JsonTokenType.Number: id = r.GetInt32(); break;
                    case "client": client = r.TokenType == JsonTokenType.True; break;
                    case "key": (keys ??= []).Add(r.GetString()!); break;
                    case "keys" when r.TokenType == JsonTokenType.StartArray:
                        multiple = true;
                        while (r.Read() && r.TokenType == JsonTokenType.String)
                        {
                            (keys ??= []).Add(r.GetString()!);
                        }

                        break;
                    default: r.Skip(); break;
                }
            }
        }
        catch (JsonException)
        {
            return;
        }

        if (name is null)
        {
            return;
        }

        var child = await GetChildAsync(gateway, name, null);
        var reply = await _door.Api.RequestAttributesAsync(child.Device, client ? keys : [], client ? [] : keys);
        var values = client ? reply.Client : reply.Shared;
        lock (_writeLock)
        {
            ResetJson();
            var w = _jsonWriter;
            w.WriteStartObject();
            w.WriteNumber("id", id);
            w.WriteString("device", name);
            // As the reference (3.4+): "key" asks for one value and gets "value"; "keys" gets a "values" object;
            // nothing found, neither.
            if (!multiple && values.Count == 1)
            {
                WriteValueAs(w, "value", values[0].Entry);
            }
            else if (values.Count > 0)
            {
                w.WriteStartObject("values");
                foreach (var v in values)
                {
                    DeviceJson.WriteValue(w, v.Entry);
                }

                w.WriteEndObject();
            }

            w.WriteEndObject();
            w.Flush();
            WritePublishLocked(MqttTopics.GatewayAttributeResponse, _json.WrittenSpan, QoS(TopicSubscription.GatewayAttributeResponses));
        }
    }

    private static void WriteValueAs(Utf8JsonWriter w, string name, KvEntry e) => DeviceJson.WriteValue(w, e.Type switch
    {
        DataType.Boolean => new KvEntry(name, e.BooleanValue),
        DataType.Long => new KvEntry(name, e.LongValue),
        DataType.Double => new KvEntry(name, e.DoubleValue),
        _ => new KvEntry(name, e.Text ?? string.Empty, e.Type == DataType.Json),
    });

    private async ValueTask<GatewayChildSession> GetChildAsync(Device gateway, string name, string? type)
    {
        _children ??= new Dictionary<string, GatewayChildSession>(StringComparer.Ordinal);
        if (_children.TryGetValue(name, out var session))
        {
            return session;
        }

        var device = await _door.Api.GetOrCreateGatewayChildAsync(gateway, name, type);
        session = new GatewayChildSession(this, device);
        _children[name] = session;
        _door.Sessions.Register(session);
        return session;
    }

    /// <summary>Top-level properties of a gateway payload: device name and the byte range of its value.</summary>
    private static List<(string Name, long Start, long Length)> SplitByDevice(ReadOnlySequence<byte> payload)
    {
        var result = new List<(string, long, long)>();
        var r = new Utf8JsonReader(payload);
        try
        {
            if (!r.Read() || r.TokenType != JsonTokenType.StartObject)
            {
                return result;
            }

            while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
            {
                string name = r.GetString()!;
                r.Read();
                long start = r.TokenStartIndex;
                r.Skip();
                result.Add((name, start, r.BytesConsumed - start));
            }
        }
        catch (JsonException)
        {
            // Malformed gateway JSON: the complete devices before the error still count.
        }

        return result;
    }

    /// <summary>Reads <c>device</c>, <c>type</c>, <c>id</c> and the byte range of <c>data</c> from a gateway message.</summary>
    private static bool ReadDeviceHeader(ReadOnlySequence<byte> payload, out string name, out string? type, out int id, out long dataStart, out long dataLength)
    {
        name = string.Empty;
        type = null;
        id = 0;
        dataStart = dataLength = 0;
        var r = new Utf8JsonReader(payload);
        try
        {
            if (!r.Read() || r.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
            {
                bool isDevice = r.ValueTextEquals("device"u8), isType = r.ValueTextEquals("type"u8), isId = r.ValueTextEquals("id"u8), isData = r.ValueTextEquals("data"u8);
                r.Read();
                if (isDevice && r.TokenType == JsonTokenType.String)
                {
                    name = r.GetString()!;
                }
                else if (isType && r.TokenType == JsonTokenType.String)
                {
                    type = r.GetString();
                }
                else if (isId && r.TokenType == JsonTokenType.Number)
                {
                    id = r.GetInt32();
                }
                else if (isData)
                {
                    dataStart = r.TokenStartIndex;
                    r.Skip();
                    dataLength = r.BytesConsumed - dataStart;
                }
                else
                {
                    r.Skip();
                }
            }
        }
        catch (JsonException)
        {
            return false;
        }

        return name.Length > 0;
    }

    private void PushGatewayAttributeUpdate(Device child, IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted)
    {
        lock (_writeLock)
        {
            ResetJson();
            _jsonWriter.WriteStartObject();
            _jsonWriter.WriteString("device", child.Name);
            _jsonWriter.WritePropertyName("data");
            DeviceJson.WriteAttributeUpdate(_jsonWriter, updated, deleted);
            _jsonWriter.WriteEndObject();
            _jsonWriter.Flush();
            WritePublishLocked(MqttTopics.GatewayAttributes, _json.WrittenSpan, QoS(TopicSubscription.GatewayAttributes));
        }

        RequestFlush();
    }

    private bool PushGatewayRpc(Device child, RpcRequest request)
    {
        bool ok;
        lock (_writeLock)
        {
            ResetJson();
            _jsonWriter.WriteStartObject();
            _jsonWriter.WriteString("device", child.Name);
            _jsonWriter.WritePropertyName("data");
            DeviceJson.WriteRpcRequest(_jsonWriter, request, withId: true);
            _jsonWriter.WriteEndObject();
            _jsonWriter.Flush();
            ok = WritePublishLocked(MqttTopics.GatewayRpc, _json.WrittenSpan, QoS(TopicSubscription.GatewayRpc));
        }

        RequestFlush();
        return ok;
    }

    /// <summary>A device behind a gateway; its pushes travel on the gateway's connection.</summary>
    private sealed class GatewayChildSession(MqttConnection gateway, Device device) : IDeviceSession
    {
        public Device Device { get; } = device;
        public Guid DeviceId => Device.Id;
        public string Transport => "MQTT";
        public string ConnectionId => gateway.ConnectionId;
        public bool WantsAttributeUpdates => (gateway._subscriptions & TopicSubscription.Gateway) != 0;
        public bool WantsRpc => (gateway._subscriptions & TopicSubscription.Gateway) != 0;

        public void PushAttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted) =>
            gateway.PushGatewayAttributeUpdate(Device, updated, deleted);

        public bool PushRpcRequest(RpcRequest request) => !gateway._closing && gateway.PushGatewayRpc(Device, request);

        /// <summary>The gateway speaks for the child with its own credentials.</summary>
        public bool EndsWhenCredentialsChange => false;

        /// <summary>A child replaced by another session keeps its entry here until the gateway disconnects it; pushes then go to the newer session.</summary>
        public void Close(string reason)
        {
        }
    }
}
