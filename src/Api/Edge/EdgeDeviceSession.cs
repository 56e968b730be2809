using Perf.Core;
using Perf.Core.Telemetry;

namespace Perf.Api.Edge;

/// <summary>
/// A device behind a connected edge, as the core's session table sees it: server-side RPCs for the
/// device become DeviceRpcCallMsg downlinks on the edge's queue. Shared attributes reach the edge
/// through the queue independently of connections, so this session does not ask for them.
/// </summary>
internal sealed class EdgeDeviceSession(EdgeConnection connection, Guid deviceId) : IDeviceSession
{
    public Guid DeviceId { get; } = deviceId;

    public string Transport => "EDGE";

    public string ConnectionId => connection.Description;

    public bool WantsAttributeUpdates => false;

    public bool WantsRpc => !connection.IsClosed;

    /// <summary>A persistent RPC is DELIVERED when the edge acknowledges the downlink that carried it.</summary>
    public bool ReportsRpcDelivery => true;

    /// <summary>The edge speaks for the device with its own routing key and secret, not the device's credentials.</summary>
    public bool EndsWhenCredentialsChange => false;

    public void PushAttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted)
    {
    }

    public bool PushRpcRequest(RpcRequest request) => connection.PushRpc(DeviceId, request);

    public void Close(string reason) => connection.RemoveDevice(DeviceId);
}
