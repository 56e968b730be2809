namespace Perf.Kestrel.Tcp;

/// <summary>
/// Turns one frame's payload into messages in the reference's uplink output shape. Implementations are
/// thread-safe (one instance serves every connection of an integration). A payload that cannot be
/// converted is an application outcome: false and a reason, never an exception.
/// </summary>
public interface IUplinkConverter
{
    /// <param name="payload">The frame, delimiter stripped per the handler configuration, as UTF-8 for text handlers.</param>
    /// <param name="output">Cleared by the caller; messages are appended.</param>
    /// <param name="error">Why the payload was rejected (script error, timeout, missing deviceName...).</param>
    bool TryConvert(ReadOnlySpan<byte> payload, UplinkBatch output, out string? error);
}

/// <summary>Encodes a downlink (shared-attribute update, RPC request) into the bytes written to the device.</summary>
public interface IDownlinkConverter
{
    /// <param name="msgJson">The rule-engine message body (for ATTRIBUTES_UPDATED: <c>{"key":value}</c>).</param>
    /// <param name="msgType">ATTRIBUTES_UPDATED, ATTRIBUTES_DELETED or RPC_CALL_FROM_SERVER_TO_DEVICE.</param>
    /// <param name="metadata">Message metadata (deviceName, deviceType, ...).</param>
    /// <param name="output">Receives the payload bytes (without the trailing newline the handler appends).</param>
    bool TryEncode(string msgJson, string msgType, IReadOnlyDictionary<string, string> metadata, System.Buffers.IBufferWriter<byte> output, out string? error);
}
