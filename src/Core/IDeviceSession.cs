using Perf.Core.Telemetry;

namespace Perf.Core;

/// <summary>A server-side RPC request as delivered to a device.</summary>
/// <param name="RequestId">The per-device integer id the device echoes in its reply.</param>
/// <param name="RpcId">The id REST callers know the request by.</param>
/// <param name="ParamsJson">Raw JSON text of params (an object, array, string or number).</param>
/// <param name="OneWay">True when no reply is expected.</param>
/// <param name="ExpirationTime">Unix milliseconds after which the request is void.</param>
public sealed record RpcRequest(int RequestId, Guid RpcId, string Method, string ParamsJson, bool OneWay, long ExpirationTime, bool Persistent);

/// <summary>
/// What a door implements for one live device session so the core can push to it. Calls come from
/// any thread; implementations enqueue and return quickly.
/// </summary>
public interface IDeviceSession
{
    Guid DeviceId { get; }

    /// <summary>The door this session belongs to (MQTT, COAP, HTTP, TCP, EDGE): the one-session-per-device rule applies per door.</summary>
    string Transport { get; }

    /// <summary>A short connection identifier for logs (remote endpoint and connection id).</summary>
    string ConnectionId { get; }

    /// <summary>True when the session has subscribed to shared-attribute updates.</summary>
    bool WantsAttributeUpdates { get; }

    /// <summary>True when the session has subscribed to server-side RPC requests.</summary>
    bool WantsRpc { get; }

    /// <summary>Shared attributes were updated or deleted.</summary>
    void PushAttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted);

    /// <summary>Delivers a server-side RPC. Returns false when the session cannot take it (closing, queue full).</summary>
    bool PushRpcRequest(RpcRequest request);

    /// <summary>
    /// True when the door reports the transport's acknowledgement of a pushed RPC through
    /// <see cref="IDeviceApi.RpcDelivered"/> (MQTT QoS 1: on PUBACK). When false, an accepted push
    /// counts as delivered (MQTT QoS 0, HTTP long poll reply written).
    /// </summary>
    bool ReportsRpcDelivery => false;

    /// <summary>
    /// True when the device opened this session with its credentials (an access token, a certificate, MQTT basic
    /// credentials), so it ends when they are replaced. False where the door speaks for the device without them
    /// (an edge, the TCP integration).
    /// </summary>
    bool EndsWhenCredentialsChange => true;

    /// <summary>The core asks the session to end (replaced by a newer session, device deleted or its credentials changed, shutdown).</summary>
    void Close(string reason);
}
