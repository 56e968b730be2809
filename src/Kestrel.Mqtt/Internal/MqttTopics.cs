using System.Buffers.Text;

namespace Perf.Kestrel.Mqtt.Internal;

internal enum TopicRoute : byte
{
    Unknown,
    Telemetry,
    Attributes,
    AttributeRequest,
    RpcReply,
    ClientRpcRequest,
    Claim,
    FirmwareChunk,
    GatewayConnect,
    GatewayDisconnect,
    GatewayTelemetry,
    GatewayAttributes,
    GatewayAttributeRequest,
    GatewayRpc,
    GatewayClaim,

    /// <summary>A request or response topic whose trailing id is not a number: refused as a bad payload (the reference closes).</summary>
    BadRequestId,
}

/// <summary>What a SUBSCRIBE filter asks for; unsupported filters get 0x80.</summary>
[Flags]
internal enum TopicSubscription : ushort
{
    None = 0,
    AttributeUpdates = 1,
    AttributeUpdatesV2 = 2,
    AttributeResponses = 4,
    RpcRequests = 8,
    RpcRequestsV2 = 16,
    RpcResponses = 32,
    Firmware = 64,
    GatewayAttributes = 128,
    GatewayRpc = 256,
    GatewayAttributeResponses = 512,

    /// <summary>Any gateway topic: a gateway subscribed to one receives its children's attribute pushes and RPCs.</summary>
    Gateway = GatewayAttributes | GatewayRpc | GatewayAttributeResponses,
}

/// <summary>Device API topics as pre-encoded UTF-8; routing matches bytes, never strings.</summary>
internal static class MqttTopics
{
    public static ReadOnlySpan<byte> Telemetry => "v1/devices/me/telemetry"u8;
    public static ReadOnlySpan<byte> Attributes => "v1/devices/me/attributes"u8;
    public static ReadOnlySpan<byte> AttributeRequestPrefix => "v1/devices/me/attributes/request/"u8;
    public static ReadOnlySpan<byte> AttributeResponsePrefix => "v1/devices/me/attributes/response/"u8;
    public static ReadOnlySpan<byte> RpcRequestPrefix => "v1/devices/me/rpc/request/"u8;
    public static ReadOnlySpan<byte> RpcResponsePrefix => "v1/devices/me/rpc/response/"u8;
    public static ReadOnlySpan<byte> Claim => "v1/devices/me/claim"u8;

    public static ReadOnlySpan<byte> TelemetryV2 => "v2/t"u8;
    public static ReadOnlySpan<byte> TelemetryV2Json => "v2/t/j"u8;
    public static ReadOnlySpan<byte> AttributesV2 => "v2/a"u8;
    public static ReadOnlySpan<byte> AttributesV2Json => "v2/a/j"u8;
    public static ReadOnlySpan<byte> AttributeRequestPrefixV2 => "v2/a/req/"u8;
    public static ReadOnlySpan<byte> AttributeResponsePrefixV2 => "v2/a/res/"u8;
    public static ReadOnlySpan<byte> RpcRequestPrefixV2 => "v2/r/req/"u8;
    public static ReadOnlySpan<byte> RpcResponsePrefixV2 => "v2/r/res/"u8;
    public static ReadOnlySpan<byte> FirmwareRequestPrefix => "v2/fw/request/"u8;
    public static ReadOnlySpan<byte> FirmwareResponsePrefix => "v2/fw/response/"u8;
    public static ReadOnlySpan<byte> FirmwareError => "v2/fw/error"u8;
    public static ReadOnlySpan<byte> ChunkInfix => "/chunk/"u8;

    public static ReadOnlySpan<byte> GatewayConnect => "v1/gateway/connect"u8;
    public static ReadOnlySpan<byte> GatewayDisconnect => "v1/gateway/disconnect"u8;
    public static ReadOnlySpan<byte> GatewayTelemetry => "v1/gateway/telemetry"u8;
    public static ReadOnlySpan<byte> GatewayAttributes => "v1/gateway/attributes"u8;
    public static ReadOnlySpan<byte> GatewayAttributeRequest => "v1/gateway/attributes/request"u8;
    public static ReadOnlySpan<byte> GatewayAttributeResponse => "v1/gateway/attributes/response"u8;
    public static ReadOnlySpan<byte> GatewayRpc => "v1/gateway/rpc"u8;
    public static ReadOnlySpan<byte> GatewayClaim => "v1/gateway/claim"u8;

    /// <summary>Routes a PUBLISH topic; <paramref name="id"/> is the trailing request id where the topic has one.</summary>
    public static TopicRoute Route(ReadOnlySpan<byte> topic, out int id, out bool v2)
    {
        id = 0;
        v2 = false;
        if (topic.StartsWith("v1/devices/me/"u8))
        {
            if (topic.SequenceEqual(Telemetry))
            {
                return TopicRoute.Telemetry;
            }

            if (topic.SequenceEqual(Attributes))
            {
                return TopicRoute.Attributes;
            }

            if (WithId(topic, AttributeRequestPrefix, TopicRoute.AttributeRequest, out id, out var route)
                || WithId(topic, RpcResponsePrefix, TopicRoute.RpcReply, out id, out route)
                || WithId(topic, RpcRequestPrefix, TopicRoute.ClientRpcRequest, out id, out route))
            {
                return route;
            }

            return topic.SequenceEqual(Claim) ? TopicRoute.Claim : TopicRoute.Unknown;
        }

        if (topic.StartsWith("v2/"u8))
        {
            v2 = true;
            if (topic.SequenceEqual(TelemetryV2) || topic.SequenceEqual(TelemetryV2Json))
            {
                return TopicRoute.Telemetry;
            }

            if (topic.SequenceEqual(AttributesV2) || topic.SequenceEqual(AttributesV2Json))
            {
                return TopicRoute.Attributes;
            }

            if (WithId(topic, AttributeRequestPrefixV2, TopicRoute.AttributeRequest, out id, out var route)
                || WithId(topic, RpcResponsePrefixV2, TopicRoute.RpcReply, out id, out route)
                || WithId(topic, RpcRequestPrefixV2, TopicRoute.ClientRpcRequest, out id, out route))
            {
                return route;
            }

            return topic.StartsWith(FirmwareRequestPrefix) ? TopicRoute.FirmwareChunk : TopicRoute.Unknown;
        }

        if (topic.StartsWith("v1/gateway/"u8))
        {
            return topic switch
            {
                _ when topic.SequenceEqual(GatewayTelemetry) => TopicRoute.GatewayTelemetry,
                _ when topic.SequenceEqual(GatewayAttributes) => TopicRoute.GatewayAttributes,
                _ when topic.SequenceEqual(GatewayConnect) => TopicRoute.GatewayConnect,
                _ when topic.SequenceEqual(GatewayDisconnect) => TopicRoute.GatewayDisconnect,
                _ when topic.SequenceEqual(GatewayAttributeRequest) => TopicRoute.GatewayAttributeRequest,
                _ when topic.SequenceEqual(GatewayRpc) => TopicRoute.GatewayRpc,
                _ when topic.SequenceEqual(GatewayClaim) => TopicRoute.GatewayClaim,
                _ => TopicRoute.Unknown,
            };
        }

        return TopicRoute.Unknown;
    }

    /// <summary>Parses <c>v2/fw/request/{reqId}/chunk/{n}</c>.</summary>
    public static bool TryParseFirmwareRequest(ReadOnlySpan<byte> topic, out int requestId, out int chunk)
    {
        requestId = chunk = 0;
        var rest = topic[FirmwareRequestPrefix.Length..];
        int infix = rest.IndexOf(ChunkInfix);
        return infix > 0
            && TryInt(rest[..infix], out requestId)
            && TryInt(rest[(infix + ChunkInfix.Length)..], out chunk);
    }

    /// <summary>Classifies a SUBSCRIBE filter; <see cref="TopicSubscription.None"/> when unsupported.</summary>
    public static TopicSubscription Classify(ReadOnlySpan<byte> filter) => filter switch
    {
        _ when filter.SequenceEqual(Attributes) => TopicSubscription.AttributeUpdates,
        _ when filter.SequenceEqual("v2/a"u8) => TopicSubscription.AttributeUpdatesV2,
        _ when filter.SequenceEqual("v1/devices/me/attributes/response/+"u8) || filter.SequenceEqual("v1/devices/me/attributes/response/#"u8)
            || filter.SequenceEqual("v2/a/res/+"u8) || filter.SequenceEqual("v2/a/res/#"u8) => TopicSubscription.AttributeResponses,
        _ when filter.SequenceEqual("v1/devices/me/rpc/request/+"u8) || filter.SequenceEqual("v1/devices/me/rpc/request/#"u8) => TopicSubscription.RpcRequests,
        _ when filter.SequenceEqual("v2/r/req/+"u8) || filter.SequenceEqual("v2/r/req/#"u8) => TopicSubscription.RpcRequestsV2,
        _ when filter.SequenceEqual("v1/devices/me/rpc/response/+"u8) || filter.SequenceEqual("v1/devices/me/rpc/response/#"u8)
            || filter.SequenceEqual("v2/r/res/+"u8) => TopicSubscription.RpcResponses,
        _ when filter.SequenceEqual("v2/fw/response/+/chunk/+"u8) || filter.SequenceEqual("v2/fw/response/#"u8) || filter.SequenceEqual(FirmwareError) => TopicSubscription.Firmware,
        _ when filter.SequenceEqual(GatewayAttributes) => TopicSubscription.GatewayAttributes,
        _ when filter.SequenceEqual(GatewayRpc) => TopicSubscription.GatewayRpc,
        _ when filter.SequenceEqual(GatewayAttributeResponse) || filter.SequenceEqual("v1/gateway/attributes/response/+"u8) => TopicSubscription.GatewayAttributeResponses,
        _ => TopicSubscription.None,
    };

    /// <summary>Writes <paramref name="prefix"/> followed by <paramref name="id"/> in decimal; returns the length.</summary>
    public static int Compose(Span<byte> destination, ReadOnlySpan<byte> prefix, int id)
    {
        prefix.CopyTo(destination);
        Utf8Formatter.TryFormat(id, destination[prefix.Length..], out int written);
        return prefix.Length + written;
    }

    /// <summary>
    /// True when <paramref name="topic"/> starts with <paramref name="prefix"/>: <paramref name="route"/> is then
    /// <paramref name="matched"/> with its id, or <see cref="TopicRoute.BadRequestId"/> when the rest is not an int
    /// (the reference's <c>Integer.parseInt</c> fails the publish).
    /// </summary>
    private static bool WithId(ReadOnlySpan<byte> topic, ReadOnlySpan<byte> prefix, TopicRoute matched, out int id, out TopicRoute route)
    {
        id = 0;
        route = TopicRoute.Unknown;
        if (!topic.StartsWith(prefix))
        {
            return false;
        }

        route = TryInt(topic[prefix.Length..], out id) ? matched : TopicRoute.BadRequestId;
        return true;
    }

    private static bool TryInt(ReadOnlySpan<byte> text, out int value) =>
        Utf8Parser.TryParse(text, out value, out int consumed) && consumed == text.Length && text.Length > 0;
}
