using System.Buffers;
using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Core;

/// <summary>Outcome of an uplink as seen by the door. Protocol errors are the door's; these are application outcomes.</summary>
public enum UplinkStatus : byte
{
    Ok = 0,
    Unauthorized,
    BadPayload,
    TooLarge,
    RateLimited,
    NotFound,
    Timeout,
    Unavailable,
}

/// <summary>An application outcome with a reason that names what was wrong (never a secret).</summary>
public readonly record struct UplinkResult(UplinkStatus Status, string? Reason = null)
{
    public static UplinkResult Success => default;
    public bool IsOk => Status == UplinkStatus.Ok;
}

/// <summary>Reply to an attribute request: the client and shared attributes that were asked for and exist.</summary>
public sealed record AttributesReply(IReadOnlyList<AttributeKv> Client, IReadOnlyList<AttributeKv> Shared);

/// <summary>An attribute value with the time it was last updated.</summary>
public readonly record struct AttributeKv(long LastUpdateTs, KvEntry Entry);

/// <summary>Reply to a client-side RPC: the JSON body sent back to the device.</summary>
public readonly record struct ClientRpcResult(UplinkResult Result, string? ResponseJson);

/// <summary>One firmware chunk. <see cref="Data"/> is empty past the end of the package.</summary>
public readonly record struct FirmwareChunkResult(UplinkResult Result, ReadOnlyMemory<byte> Data);

/// <summary>
/// The facade every door calls. Payloads are passed as the bytes the door received; an implementation
/// parses (and copies what it keeps) synchronously before its first await, so the door may release
/// its read buffer as soon as the call returns. The returned task completes when the uplink is durable
/// (committed to the log) or with a typed failure.
/// </summary>
public interface IDeviceApi
{
    /// <summary>Resolves an access token (UTF-8) to its device; null when unknown. Does not allocate for a known token.</summary>
    Device? Authenticate(ReadOnlySpan<byte> utf8Token);

    /// <summary>Resolves an access token to its device; null when unknown.</summary>
    Device? Authenticate(string token);

    /// <summary>
    /// Resolves a client certificate (its DER bytes, from a TLS handshake) to the device whose X.509 credentials it is;
    /// null when none.
    /// </summary>
    Device? AuthenticateCertificate(ReadOnlySpan<byte> certificateDer) => null;

    /// <summary>
    /// Resolves an MQTT CONNECT's client id, user name and password to the device whose MQTT basic credentials
    /// (<c>MQTT_BASIC</c>) they are; null when none.
    /// </summary>
    Device? AuthenticateMqttBasic(string clientId, ReadOnlySpan<byte> utf8UserName, ReadOnlySpan<byte> password) => null;

    ValueTask<UplinkResult> PostTelemetryAsync(Device device, ReadOnlySequence<byte> json);

    ValueTask<UplinkResult> PostAttributesAsync(Device device, ReadOnlySequence<byte> json);

    /// <summary>
    /// Client and shared attributes, chosen by the reference's rule: with no key in either list (null or empty), all
    /// of both scopes; else only the keys named, and nothing of a scope whose list names none. With
    /// <paramref name="onlyShared"/> (a CoAP observation), no client attributes, and all shared ones when no shared
    /// key is named. Missing keys are skipped.
    /// </summary>
    ValueTask<AttributesReply> RequestAttributesAsync(Device device, IReadOnlyList<string>? clientKeys, IReadOnlyList<string>? sharedKeys, bool onlyShared = false);

    /// <summary>The device's reply to server-side RPC <paramref name="requestId"/>.</summary>
    ValueTask<UplinkResult> RpcReplyAsync(Device device, int requestId, ReadOnlySequence<byte> json);

    /// <summary>
    /// The transport acknowledged server-side RPC <paramref name="requestId"/> (MQTT PUBACK of its QoS 1
    /// PUBLISH): a persistent RPC becomes DELIVERED. Called only by sessions with <see cref="IDeviceSession.ReportsRpcDelivery"/>.
    /// </summary>
    void RpcDelivered(Device device, int requestId)
    {
    }

    /// <summary>A client-side RPC <c>{"method","params"}</c>; built-ins: getCurrentTime, getSessionLimits.</summary>
    ValueTask<ClientRpcResult> ClientRpcAsync(Device device, ReadOnlySequence<byte> json, CancellationToken cancellationToken);

    ValueTask<UplinkResult> ClaimAsync(Device device, ReadOnlySequence<byte> json);

    /// <summary>A chunk of the OTA package assigned to the device (title/version null: the assigned one).</summary>
    ValueTask<FirmwareChunkResult> GetFirmwareChunkAsync(Device device, string? title, string? version, int chunkSize, int chunkIndex);

    /// <summary>Gateway API: the child device named <paramref name="name"/>, created on first use under the gateway's tenant.</summary>
    ValueTask<Device> GetOrCreateGatewayChildAsync(Device gateway, string name, string? type);
}
