using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Perf.Api.Edge;
using Perf.Api.Edge.Protos;
using Perf.Api.Edge.Protos.Transport;
using Perf.Core.Telemetry;
using Perf.Fuzz.Harness;

namespace Perf.Fuzz.Targets;

/// <summary>
/// The edge protocol: a <see cref="RequestMsg"/> parsed from the bytes of one gRPC message, then the
/// server's conversions of an uplink into core calls that run without a server (<see cref="EdgeProto"/>:
/// ids, scopes, key/values, telemetry lists, device entities, RPC bodies). Invariants: parsing throws only
/// <see cref="InvalidProtocolBufferException"/>; a parsed message serializes to CalculateSize bytes and
/// parses back to the same bytes; no conversion throws; every key/value the core would get holds what the JSON
/// parser guarantees for device payloads (a non-empty key, a finite double, JSON text that is JSON), so
/// the MQTT, CoAP and REST renderers can write it; a client RPC request body is JSON.
/// </summary>
internal sealed class EdgeProtoTarget : FuzzTarget
{
    public override string Name => "edge-proto";

    public override string Description => "RequestMsg protobuf parse/serialize round trip + EdgeProto uplink conversions";

    public override IReadOnlyList<byte[]> Dictionary { get; } =
    [
        [0x08], [0x10], [0x1A], [0x22], [0x2A], [0x12, 0x00], [0x1A, 0x00], [0x29, 0, 0, 0, 0, 0, 0, 0xF8, 0x7F], [0x29, 0, 0, 0, 0, 0, 0, 0xF0, 0x7F],
        [0x10, 0x02], [0x10, 0x04], [0x10, 0x07], [0xFF, 0xFF, 0xFF, 0xFF, 0x0F], [0xED, 0xA0, 0x80],
        .. new[] { "CLIENT_SCOPE", "SERVER_SCOPE", "SHARED_SCOPE", "DEVICE", "{\"name\":1}", "{\"name\":\"d\",\"type\":[]}", "{", "\"" }.Select(Encoding.UTF8.GetBytes),
    ];

    public override ulong Run(ReadOnlySpan<byte> input)
    {
        var signature = new Signature();

        // The JSON strings an uplink carries (device entity, RPC params) are fuzzed as text too: byte mutations of a
        // protobuf rarely keep its lengths intact while changing the JSON inside, so the corpus holds bare JSON as well.
        var text = Encoding.UTF8.GetString(input);
        signature.Add(EdgeProto.TryReadDeviceEntity(text, out _, out _) ? 2UL : 3UL);
        signature.Add(EdgeProto.TryReadCredentialsEntity(text, out _, out var credentialsError) ? 4UL : 5UL);
        FuzzInvariantException.Check(credentialsError is null || credentialsError.Length > 0, "a rejected credentials entity without a reason");
        CheckClientRpc(new RpcRequestMsg { Method = "m", Params = text });

        RequestMsg message;
        try
        {
            message = RequestMsg.Parser.ParseFrom(input);
        }
        catch (InvalidProtocolBufferException)
        {
            signature.Add(1);
            return signature.Value;
        }

        var bytes = message.ToByteArray();
        FuzzInvariantException.Equal(message.CalculateSize(), bytes.Length, "CalculateSize vs serialized length");
        var again = RequestMsg.Parser.ParseFrom(bytes);
        // Bytes, not Equals: proto3 drops a double field holding -0.0 (it compares != 0) while Equals compares bits,
        // so a message with -0.0 legitimately comes back with +0.0. Serializing must be stable after one round.
        FuzzInvariantException.Check(again.ToByteArray().AsSpan().SequenceEqual(bytes), "a serialized RequestMsg serializes differently after parsing it back");
        signature.Add(10 + (ulong)message.MsgType);
        signature.Add(message.ConnectRequestMsg is null ? 0UL : 1UL);
        signature.Add(message.SyncRequestMsg is null ? 0UL : 2UL);
        signature.Add(message.DownlinkResponseMsg is null ? 0UL : 3UL);
        if (message.UplinkMsg is { } uplink)
        {
            Uplink(uplink, ref signature);
        }

        return signature.Value;
    }

    private static void Uplink(UplinkMsg uplink, ref Signature signature)
    {
        var keys = new KeyTable();
        foreach (var data in uplink.EntityData)
        {
            var id = EdgeProto.Join(data.EntityIdMSB, data.EntityIdLSB);
            FuzzInvariantException.Equal((data.EntityIdMSB, data.EntityIdLSB), EdgeProto.Split(id), "uuid Join/Split");
            signature.Add(EdgeProto.Scope(data.PostAttributeScope, Perf.Core.Domain.AttributeScope.Client) is null ? 20UL : 21UL);
            if (data.PostTelemetryMsg is { } telemetry)
            {
                var entries = new List<TsKvEntry>();
                if (EdgeProto.TryAddTelemetry(entries, telemetry, keys, 1_700_000_000_000, out var error))
                {
                    signature.Add(30);
                    foreach (var e in entries)
                    {
                        FuzzInvariantException.Check(e.Ts > 0, $"telemetry stamped {e.Ts}");
                        CheckEntry(e.Entry, ref signature);
                    }
                }
                else
                {
                    FuzzInvariantException.Check(!string.IsNullOrEmpty(error), "a rejected telemetry list without a reason");
                    signature.Add(31);
                }
            }

            foreach (var attributes in new[] { data.PostAttributesMsg, data.AttributesUpdatedMsg })
            {
                foreach (var kv in attributes?.Kv ?? [])
                {
                    if (EdgeProto.TryToKv(kv, keys, out var entry, out var error))
                    {
                        CheckEntry(entry, ref signature);
                        FuzzInvariantException.Check(EdgeProto.TryToKv(EdgeProto.FromKv(entry), keys, out var back, out _) && back == entry,
                            $"key/value {entry} does not survive FromKv/ToKv");
                    }
                    else
                    {
                        FuzzInvariantException.Check(!string.IsNullOrEmpty(error), "a rejected key/value without a reason");
                        signature.Add(40);
                    }
                }
            }

            if (data.AttributeDeleteMsg is { } delete)
            {
                signature.Add(EdgeProto.Scope(delete.Scope, Perf.Core.Domain.AttributeScope.Server) is null ? 50UL : 51UL);
            }
        }

        foreach (var update in uplink.DeviceUpdateMsg)
        {
            bool ok = EdgeProto.TryReadDeviceEntity(update.Entity, out var device, out var error);
            FuzzInvariantException.Check(ok ? !string.IsNullOrWhiteSpace(device.Name) : !string.IsNullOrEmpty(error), "device entity result");
            signature.Add(ok ? 60UL : 61UL);
        }

        foreach (var call in uplink.DeviceRpcCallMsg)
        {
            if (call.ResponseMsg is { } reply)
            {
                signature.Add(reply.Error.Length > 0 ? 71UL + (ulong)EdgeProto.RpcFailure(reply.Error) : 70UL);
            }

            if (call.RequestMsg is { } request)
            {
                CheckClientRpc(request);
                signature.Add(71);
            }
        }

        foreach (var request in uplink.AttributesRequestMsg)
        {
            _ = EdgeProto.Join(request.EntityIdMSB, request.EntityIdLSB);
            signature.Add(EdgeProto.Scope(request.Scope, Perf.Core.Domain.AttributeScope.Shared) is null ? 80UL : 81UL);
        }
    }

    private static void CheckClientRpc(RpcRequestMsg request)
    {
        var body = EdgeProto.ClientRpcRequest(request);
        try
        {
            using var doc = JsonDocument.Parse(body);
            FuzzInvariantException.Check(doc.RootElement.TryGetProperty("method", out _) && doc.RootElement.TryGetProperty("params", out _), "client RPC body lacks method/params");
        }
        catch (JsonException ex)
        {
            throw new FuzzInvariantException($"client RPC body is not JSON: {ex.Message}");
        }
    }

    /// <summary>What the JSON parser guarantees for device payloads must hold for edge payloads too.</summary>
    private static void CheckEntry(KvEntry entry, ref Signature signature)
    {
        signature.Add(90 + (ulong)entry.Type);
        FuzzInvariantException.Check(!string.IsNullOrEmpty(entry.Key), "an entry with an empty key reaches the core");
        if (entry.Type == DataType.Double)
        {
            FuzzInvariantException.Check(double.IsFinite(entry.DoubleValue), $"a non-finite double ({entry.DoubleValue}) for '{entry.Key}' reaches the core; the MQTT/CoAP/REST renderers cannot write it");
        }

        if (entry.Type == DataType.Json)
        {
            try
            {
                using var doc = JsonDocument.Parse(entry.Text!);
            }
            catch (JsonException ex)
            {
                throw new FuzzInvariantException($"a JSON value for '{entry.Key}' that is not JSON reaches the core ({ex.Message}); the renderers write it raw");
            }
        }
    }

    public override IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        var device = EdgeProto.Split(Guid.Parse("5a2c0f5e-9c3d-4b8a-8f11-3c1e2d4b6a70"));
        yield return ("connect", new RequestMsg
        {
            MsgType = RequestMsgType.ConnectRpcMessage,
            ConnectRequestMsg = new ConnectRequestMsg { EdgeRoutingKey = "7390c3a6-69b0-9910-d155-b90aca4b772e", EdgeSecret = "l7q4zsjplzwhk16geqxy", EdgeVersion = EdgeVersion.V440, MaxInboundMessageSize = 4 * 1024 * 1024 },
        }.ToByteArray());
        yield return ("sync", new RequestMsg { MsgType = RequestMsgType.SyncRequestRpcMessage, SyncRequestMsg = new SyncRequestMsg { FullSync = true } }.ToByteArray());
        yield return ("downlink-ack", new RequestMsg { DownlinkResponseMsg = new DownlinkResponseMsg { Success = true, DownlinkMsgId = 3 } }.ToByteArray());

        var telemetry = new PostTelemetryMsg();
        var list = new TsKvListProto { Ts = 1451649600512 };
        list.Kv.Add(new KeyValueProto { Key = "temperature", Type = KeyValueType.DoubleV, DoubleV = 21.5 });
        list.Kv.Add(new KeyValueProto { Key = "count", Type = KeyValueType.LongV, LongV = 42 });
        list.Kv.Add(new KeyValueProto { Key = "active", Type = KeyValueType.BooleanV, BoolV = true });
        list.Kv.Add(new KeyValueProto { Key = "firmware", Type = KeyValueType.StringV, StringV = "1.0.2" });
        list.Kv.Add(new KeyValueProto { Key = "config", Type = KeyValueType.JsonV, JsonV = "{\"someNumber\":42,\"someArray\":[1,2,3]}" });
        telemetry.TsKvList.Add(list);
        telemetry.TsKvList.Add(new TsKvListProto { Kv = { new KeyValueProto { Key = "now", Type = KeyValueType.LongV, LongV = 1 } } });
        var attributes = new PostAttributeMsg { Kv = { new KeyValueProto { Key = "serial", Type = KeyValueType.StringV, StringV = "SN-001" } } };
        var uplink = new UplinkMsg { UplinkMsgId = 1 };
        uplink.EntityData.Add(new EntityDataProto { EntityIdMSB = device.Msb, EntityIdLSB = device.Lsb, EntityType = "DEVICE", PostTelemetryMsg = telemetry });
        uplink.EntityData.Add(new EntityDataProto
        {
            EntityIdMSB = device.Msb, EntityIdLSB = device.Lsb, EntityType = "DEVICE", PostAttributesMsg = attributes, PostAttributeScope = "SHARED_SCOPE", AttributeTs = 1700000000000,
        });
        uplink.EntityData.Add(new EntityDataProto
        {
            EntityIdMSB = device.Msb, EntityIdLSB = device.Lsb, AttributesUpdatedMsg = attributes,
            AttributeDeleteMsg = new AttributeDeleteMsg { Scope = "SERVER_SCOPE", AttributeNames = { "old", "older" } },
        });
        yield return ("uplink-entity-data", new RequestMsg { MsgType = RequestMsgType.UplinkRpcMessage, UplinkMsg = uplink }.ToByteArray());

        var devices = new UplinkMsg { UplinkMsgId = 2 };
        devices.DeviceUpdateMsg.Add(new DeviceUpdateMsg
        {
            MsgType = UpdateMsgType.EntityCreatedRpcMessage, IdMSB = device.Msb, IdLSB = device.Lsb,
            Entity = "{\"name\":\"Edge device 1\",\"type\":\"thermostat\",\"label\":\"Room 1\",\"additionalInfo\":{\"description\":\"\"}}",
        });
        devices.DeviceUpdateMsg.Add(new DeviceUpdateMsg { MsgType = UpdateMsgType.EntityDeletedRpcMessage, IdMSB = device.Msb, IdLSB = device.Lsb });
        devices.DeviceUpdateMsg.Add(new DeviceUpdateMsg { MsgType = UpdateMsgType.EntityUpdatedRpcMessage, IdMSB = device.Msb, IdLSB = device.Lsb, Entity = "{\"name\":\"7\",\"type\":\"t\",\"label\":\"1\"}" });
        devices.AttributesRequestMsg.Add(new AttributesRequestMsg { EntityIdMSB = device.Msb, EntityIdLSB = device.Lsb, EntityType = "DEVICE", Scope = "SHARED_SCOPE" });
        yield return ("uplink-devices", new RequestMsg { MsgType = RequestMsgType.UplinkRpcMessage, UplinkMsg = devices }.ToByteArray());

        var rpc = new UplinkMsg { UplinkMsgId = 3 };
        rpc.DeviceRpcCallMsg.Add(new DeviceRpcCallMsg { DeviceIdMSB = device.Msb, DeviceIdLSB = device.Lsb, RequestId = 7, ResponseMsg = new RpcResponseMsg { Response = "{\"result\":\"ok\"}" } });
        rpc.DeviceRpcCallMsg.Add(new DeviceRpcCallMsg { DeviceIdMSB = device.Msb, DeviceIdLSB = device.Lsb, RequestId = 8, ResponseMsg = new RpcResponseMsg { Error = "timeout" } });
        rpc.DeviceRpcCallMsg.Add(new DeviceRpcCallMsg
        {
            DeviceIdMSB = device.Msb, DeviceIdLSB = device.Lsb, RequestId = 9, ExpirationTime = 1700000060000,
            RequestMsg = new RpcRequestMsg { Method = "getCurrentTime", Params = "{}" },
        });
        yield return ("entity-json", "{\"name\":\"Edge device 1\",\"type\":\"thermostat\",\"label\":\"Room 1\",\"additionalInfo\":{\"gateway\":false}}"u8.ToArray());
        yield return ("entity-json-short", "{\"name\":\"7\",\"type\":\"t\",\"label\":null}"u8.ToArray());
        yield return ("credentials-json", "{\"deviceId\":{\"entityType\":\"DEVICE\",\"id\":\"5a2c0f5e-9c3d-4b8a-8f11-3c1e2d4b6a70\"},\"credentialsType\":\"MQTT_BASIC\",\"credentialsId\":null,\"credentialsValue\":{\"clientId\":\"c\"}}"u8.ToArray());
        yield return ("uplink-rpc", new RequestMsg { MsgType = RequestMsgType.UplinkRpcMessage, UplinkMsg = rpc }.ToByteArray());
    }
}
