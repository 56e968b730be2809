using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Perf.Core;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>A downlink waiting for the connection's writer: the rule-engine message the encoder receives.</summary>
internal sealed record TcpDownlink(TcpDeviceSession Session, string MsgType, string MsgJson, RpcRequest? Rpc);

/// <summary>
/// One device's session on one TCP connection. A connection is the session of every device decoded on it;
/// pushes are queued (bounded) to the connection's writer, which runs the encoder and writes the bytes.
/// </summary>
internal sealed class TcpDeviceSession(TcpConnection owner, Guid deviceId, string deviceName, string deviceType) : IDeviceSession
{
    internal const string AttributesUpdated = "ATTRIBUTES_UPDATED";
    internal const string AttributesDeleted = "ATTRIBUTES_DELETED";
    internal const string RpcToDevice = "RPC_CALL_FROM_SERVER_TO_DEVICE";

    private int _closed;
    private ParkedDownlinks? _parked;

    public Guid DeviceId { get; } = deviceId;
    public string DeviceName { get; } = deviceName;
    public string DeviceType { get; } = deviceType;
    public string Transport => "TCP";

    /// <summary>The integration creates and speaks for its devices without their credentials.</summary>
    public bool EndsWhenCredentialsChange => false;
    public string ConnectionId => owner.ConnectionId;
    public bool WantsAttributeUpdates => owner.CanDownlink;
    public bool WantsRpc => owner.CanDownlink;
    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>True when the connection closed and pushes wait for the device's next connection.</summary>
    public bool IsParked => Volatile.Read(ref _parked) is not null;

    public void PushAttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted)
    {
        if (IsClosed || !owner.CanDownlink)
        {
            return;
        }

        if (updated.Count > 0)
        {
            Route(new TcpDownlink(this, AttributesUpdated, KvJson(updated), null));
        }

        if (deleted.Count > 0)
        {
            Route(new TcpDownlink(this, AttributesDeleted, JsonSerializer.Serialize(new { attributes = deleted }), null));
        }
    }

    public bool PushRpcRequest(RpcRequest request)
    {
        if (IsClosed || !owner.CanDownlink)
        {
            return false;
        }

        var buffer = new ArrayBufferWriter<byte>(64 + request.Method.Length + request.ParamsJson.Length);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("method"u8, request.Method);
            writer.WritePropertyName("params"u8);
            writer.WriteRawValue(string.IsNullOrWhiteSpace(request.ParamsJson) ? "{}" : request.ParamsJson);
            writer.WriteEndObject();
        }

        return Route(new TcpDownlink(this, RpcToDevice, Encoding.UTF8.GetString(buffer.WrittenSpan), request));
    }

    public void Close(string reason)
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0)
        {
            if (Volatile.Read(ref _parked) is { } parked)
            {
                parked.Abandon();
            }

            owner.Detach(this, reason);
        }
    }

    internal void MarkClosed() => Volatile.Write(ref _closed, 1);

    /// <summary>The connection closed: from now on pushes queue in <paramref name="parked"/>.</summary>
    internal void Park(ParkedDownlinks parked) => Volatile.Write(ref _parked, parked);

    private bool Route(TcpDownlink downlink) =>
        Volatile.Read(ref _parked) is { } parked ? parked.TryAdd(downlink) : owner.Enqueue(downlink);

    /// <summary>The encoder's metadata for a downlink, as the reference's rule-engine message carries it.</summary>
    internal Dictionary<string, string> Metadata(TcpDownlink downlink)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["deviceName"] = DeviceName,
            ["deviceType"] = DeviceType,
        };
        if (downlink.Rpc is { } rpc)
        {
            metadata["requestId"] = rpc.RequestId.ToString(CultureInfo.InvariantCulture);
            metadata["requestUUID"] = rpc.RpcId.ToString();
            metadata["oneway"] = rpc.OneWay ? "true" : "false";
            metadata["expirationTime"] = rpc.ExpirationTime.ToString(CultureInfo.InvariantCulture);
            metadata["persistent"] = rpc.Persistent ? "true" : "false";
        }
        else
        {
            metadata["scope"] = "SHARED_SCOPE";
        }

        return metadata;
    }

    /// <summary>Shared attributes as the reference's ATTRIBUTES_UPDATED body: <c>{"key":value,...}</c>.</summary>
    internal static string KvJson(IReadOnlyList<KvEntry> entries)
    {
        var buffer = new ArrayBufferWriter<byte>(64 * Math.Max(1, entries.Count));
        using (var writer = new Utf8JsonWriter(buffer))
        {
            DeviceJson.WriteValues(writer, entries);
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}
