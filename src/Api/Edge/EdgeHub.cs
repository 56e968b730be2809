using System.Collections.Concurrent;
using Google.Protobuf;
using Perf.Api.Edge.Protos;
using Perf.Api.Edge.Protos.Transport;
using Perf.Api.Rest;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Api.Edge;

/// <summary>
/// Turns core changes into downlinks on the durable per-edge queues and tracks the live edge
/// connections. Core events arrive on the commit loop, so handlers only encode and enqueue; the
/// connection's pump delivers. Every event is built in its own try/catch: a failure drops that event
/// (logged) and never stops the others or a sync (the reference's stuck-sync bug).
/// </summary>
public sealed class EdgeHub : IDisposable
{
    /// <summary>Edges older than 3.6 expect the retired per-field credentials layout; they get no credentials messages.</summary>
    private const int CredentialsJsonSince = (int)EdgeVersion.V360;

    private readonly PerfEngine _engine;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<Guid, EdgeConnection> _connections = new();
    private readonly ConcurrentDictionary<Guid, IDisposable> _attributeSubscriptions = new();

    public EdgeHub(PerfEngine engine, EdgeOptions options, ILoggerFactory loggers)
    {
        _engine = engine;
        Options = options;
        _logger = loggers.CreateLogger("Perf.Edge");
        engine.Registry.DeviceSaved += OnDeviceSaved;
        engine.Registry.CredentialsSaved += OnCredentialsSaved;
        engine.Edges.AssignmentChanged += OnAssignmentChanged;
        engine.Edges.DeviceDeleted += OnDeviceDeleted;
        engine.Edges.DownlinkQueued += edgeId => Connection(edgeId)?.Wake();
        foreach (var tenant in engine.Registry.ListTenants())
        {
            foreach (var edge in engine.Registry.ListEdges(tenant.Id))
            {
                foreach (var deviceId in engine.Edges.AssignedDevices(edge.Id))
                {
                    WatchAttributes(deviceId);
                }
            }
        }
    }

    public EdgeOptions Options { get; }

    internal PerfEngine Engine => _engine;

    internal ILogger Logger => _logger;

    public bool IsConnected(Guid edgeId) => _connections.ContainsKey(edgeId);

    internal EdgeConnection? Connection(Guid edgeId) => _connections.GetValueOrDefault(edgeId);

    /// <summary>Makes <paramref name="connection"/> the edge's live one; an older stream of the same edge is told to end.</summary>
    internal void Attach(EdgeConnection connection)
    {
        _connections.AddOrUpdate(connection.EdgeId, connection, (_, old) =>
        {
            old.Close();
            return connection;
        });
    }

    /// <summary>Ends every edge stream (host shutdown): the edges reconnect to the next instance.</summary>
    public void CloseAll()
    {
        foreach (var connection in _connections.Values)
        {
            connection.Close();
        }
    }

    internal void Detach(EdgeConnection connection) =>
        _connections.TryRemove(new KeyValuePair<Guid, EdgeConnection>(connection.EdgeId, connection));

    /// <summary>Queues every assigned device (entity, credentials, shared attributes), then syncCompletedMsg. Returns the seq of the latter.</summary>
    public async Task<long> QueueFullSyncAsync(Guid edgeId, int edgeVersion)
    {
        var devices = _engine.Edges.AssignedDevices(edgeId);
        var pending = new List<Task<long>>(devices.Count + 2);
        if (_engine.Registry.GetEdge(edgeId) is { } edge)
        {
            pending.Add(Enqueue(edgeId, new DownlinkMsg { EdgeConfiguration = EdgeProto.Configuration(edge) }));
        }
        foreach (var deviceId in devices)
        {
            try
            {
                if (DeviceSnapshot(deviceId, UpdateMsgType.EntityCreatedRpcMessage, edgeVersion) is { } msg)
                {
                    pending.Add(Enqueue(edgeId, msg));
                }
            }
            catch (Exception e)
            {
                EdgeLog.EventFailed(_logger, edgeId, deviceId, e);
            }
        }
        EdgeLog.FullSyncQueued(_logger, edgeId, devices.Count);
        // The completion marker is queued whatever happened to the events before it.
        var completed = Enqueue(edgeId, new DownlinkMsg { SyncCompletedMsg = new SyncCompletedMsg() });
        foreach (var task in pending)
        {
            try
            {
                await task;
            }
            catch (Exception e)
            {
                EdgeLog.EventFailed(_logger, edgeId, Guid.Empty, e);
            }
        }
        return await completed;
    }

    /// <summary>Queues a syncCompletedMsg alone (a sync request without fullSync: the pending queue is the delta).</summary>
    public Task<long> QueueSyncCompletedAsync(Guid edgeId) =>
        Enqueue(edgeId, new DownlinkMsg { SyncCompletedMsg = new SyncCompletedMsg() });

    /// <summary>Queues the current attributes of one scope of a device (answer to an AttributesRequestMsg).</summary>
    internal Task<long> QueueAttributesAsync(Guid edgeId, Guid deviceId, AttributeScope scope)
    {
        var msg = new DownlinkMsg();
        msg.EntityData.Add(AttributesData(deviceId, scope, _engine.Attributes.Get(deviceId, scope).Select(a => a.Entry)));
        return Enqueue(edgeId, msg);
    }

    /// <summary>Queues a server-side RPC for a device behind the edge.</summary>
    internal Task<long> QueueRpcAsync(Guid edgeId, Guid deviceId, RpcRequest request)
    {
        var (deviceMsb, deviceLsb) = EdgeProto.Split(deviceId);
        var (uuidMsb, uuidLsb) = EdgeProto.Split(request.RpcId);
        var msg = new DownlinkMsg();
        msg.DeviceRpcCallMsg.Add(new DeviceRpcCallMsg
        {
            DeviceIdMSB = deviceMsb,
            DeviceIdLSB = deviceLsb,
            RequestUuidMSB = uuidMsb,
            RequestUuidLSB = uuidLsb,
            RequestId = request.RequestId,
            ExpirationTime = request.ExpirationTime,
            Oneway = request.OneWay,
            Persisted = request.Persistent,
            RequestMsg = new RpcRequestMsg { Method = request.Method, Params = request.ParamsJson },
        });
        return Enqueue(edgeId, msg);
    }

    internal Task<long> Enqueue(Guid edgeId, DownlinkMsg msg) => _engine.Edges.EnqueueAsync(edgeId, msg.ToByteArray());

    private DownlinkMsg? DeviceSnapshot(Guid deviceId, UpdateMsgType type, int edgeVersion)
    {
        if (_engine.Registry.GetDevice(deviceId) is not { } device)
        {
            return null;
        }
        var msg = new DownlinkMsg();
        msg.DeviceUpdateMsg.Add(DeviceUpdate(device, type));
        if (edgeVersion >= CredentialsJsonSince && _engine.Registry.GetCredentials(deviceId) is { } credentials)
        {
            msg.DeviceCredentialsUpdateMsg.Add(CredentialsUpdate(credentials));
        }
        var shared = _engine.Attributes.Get(deviceId, AttributeScope.Shared);
        if (shared.Count > 0)
        {
            msg.EntityData.Add(AttributesData(deviceId, AttributeScope.Shared, shared.Select(a => a.Entry)));
        }
        return msg;
    }

    /// <summary>Queues the device as it now is to one edge (a rename the server made to a device that edge created).</summary>
    internal Task<long> QueueDeviceUpdateAsync(Guid edgeId, Device device)
    {
        var msg = new DownlinkMsg();
        msg.DeviceUpdateMsg.Add(DeviceUpdate(device, UpdateMsgType.EntityUpdatedRpcMessage));
        return Enqueue(edgeId, msg);
    }

    private static DeviceUpdateMsg DeviceUpdate(Device device, UpdateMsgType type)
    {
        var (msb, lsb) = EdgeProto.Split(device.Id);
        return new DeviceUpdateMsg { MsgType = type, IdMSB = msb, IdLSB = lsb, Entity = EntityJson.Device(device).ToJsonString() };
    }

    private static DeviceCredentialsUpdateMsg CredentialsUpdate(DeviceCredentials credentials)
    {
        var json = EntityJson.Credentials(credentials);
        json["deviceId"] = EntityJson.Id(EdgeProto.DeviceEntityType, credentials.DeviceId);
        return new DeviceCredentialsUpdateMsg { Entity = json.ToJsonString() };
    }

    private static EntityDataProto AttributesData(Guid deviceId, AttributeScope scope, IEnumerable<Perf.Core.Telemetry.KvEntry> entries)
    {
        var (msb, lsb) = EdgeProto.Split(deviceId);
        var attributes = new PostAttributeMsg { Shared = scope == AttributeScope.Shared };
        foreach (var kv in entries)
        {
            attributes.Kv.Add(EdgeProto.FromKv(kv));
        }
        return new EntityDataProto
        {
            EntityIdMSB = msb,
            EntityIdLSB = lsb,
            EntityType = EdgeProto.DeviceEntityType,
            AttributesUpdatedMsg = attributes,
            PostAttributeScope = EdgeProto.ScopeName(scope),
        };
    }

    // ---------------------------------------------------------------- core events (commit loop)

    /// <summary>Queues what <paramref name="build"/> makes for each edge of the device but <paramref name="origin"/>, which made the change.</summary>
    private void ForEachEdge(Guid deviceId, Func<Guid, DownlinkMsg?> build, Guid origin = default)
    {
        foreach (var edgeId in _engine.Edges.EdgesOf(deviceId))
        {
            if (edgeId == origin)
            {
                continue;
            }

            try
            {
                if (build(edgeId) is { } msg)
                {
                    Observe(edgeId, deviceId, Enqueue(edgeId, msg));
                }
            }
            catch (Exception e)
            {
                EdgeLog.EventFailed(_logger, edgeId, deviceId, e);
            }
        }
    }

    private void Observe(Guid edgeId, Guid deviceId, Task task) =>
        task.ContinueWith(t => EdgeLog.EventFailed(_logger, edgeId, deviceId, t.Exception!), CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);

    private void OnDeviceSaved(Device device, Guid origin) =>
        ForEachEdge(device.Id, _ =>
        {
            var msg = new DownlinkMsg();
            msg.DeviceUpdateMsg.Add(DeviceUpdate(device, UpdateMsgType.EntityUpdatedRpcMessage));
            return msg;
        }, origin);

    private void OnCredentialsSaved(DeviceCredentials credentials) =>
        ForEachEdge(credentials.DeviceId, edgeId =>
        {
            if (_engine.Edges.GetConnectionInfo(edgeId).EdgeVersion < CredentialsJsonSince)
            {
                return null;
            }
            var msg = new DownlinkMsg();
            msg.DeviceCredentialsUpdateMsg.Add(CredentialsUpdate(credentials));
            return msg;
        });

    /// <summary>
    /// Assigns or unassigns a device and queues the matching downlink (the device with its credentials
    /// and shared attributes, or its removal). Completes once both are durable, so an acknowledged
    /// assignment reaches the edge even across a crash.
    /// </summary>
    public async Task<bool> SetAssignmentAsync(Guid edgeId, Guid deviceId, bool assigned, bool tellTheEdge = true)
    {
        var changed = await _engine.Edges.SetAssignmentAsync(edgeId, deviceId, assigned);
        if (!changed || !tellTheEdge)
        {
            return changed;
        }
        var msg = assigned
            ? DeviceSnapshot(deviceId, UpdateMsgType.EntityCreatedRpcMessage, _engine.Edges.GetConnectionInfo(edgeId).EdgeVersion)
            : DeletedMsg(deviceId);
        if (msg is not null)
        {
            await Enqueue(edgeId, msg);
        }
        return true;
    }

    /// <summary>Live side of an assignment (commit loop): attribute watch and the edge-backed session.</summary>
    private void OnAssignmentChanged(Guid edgeId, Guid deviceId, bool assigned)
    {
        try
        {
            if (assigned)
            {
                WatchAttributes(deviceId);
                Connection(edgeId)?.AddDevice(deviceId);
            }
            else
            {
                Connection(edgeId)?.RemoveDevice(deviceId);
                if (_engine.Edges.EdgesOf(deviceId).Count == 0 && _attributeSubscriptions.TryRemove(deviceId, out var subscription))
                {
                    subscription.Dispose();
                }
            }
        }
        catch (Exception e)
        {
            EdgeLog.EventFailed(_logger, edgeId, deviceId, e);
        }
    }

    private void OnDeviceDeleted(Guid deviceId, IReadOnlyList<Guid> edges)
    {
        if (_attributeSubscriptions.TryRemove(deviceId, out var subscription))
        {
            subscription.Dispose();
        }
        foreach (var edgeId in edges)
        {
            Connection(edgeId)?.RemoveDevice(deviceId);
            Observe(edgeId, deviceId, Enqueue(edgeId, DeletedMsg(deviceId)));
        }
    }

    private static DownlinkMsg DeletedMsg(Guid deviceId)
    {
        var (msb, lsb) = EdgeProto.Split(deviceId);
        var msg = new DownlinkMsg();
        msg.DeviceUpdateMsg.Add(new DeviceUpdateMsg { MsgType = UpdateMsgType.EntityDeletedRpcMessage, IdMSB = msb, IdLSB = lsb });
        return msg;
    }

    private void WatchAttributes(Guid deviceId)
    {
        if (_attributeSubscriptions.ContainsKey(deviceId))
        {
            return;
        }
        var subscription = _engine.Telemetry.Subscribe(deviceId, OnDeviceUpdate);
        if (!_attributeSubscriptions.TryAdd(deviceId, subscription))
        {
            subscription.Dispose();
        }
    }

    private void OnDeviceUpdate(Perf.Core.DeviceUpdate update)
    {
        if (update.Kind != DeviceUpdateKind.Attributes || update.Scope != AttributeScope.Shared)
        {
            return;
        }
        ForEachEdge(update.DeviceId, _ =>
        {
            var msg = new DownlinkMsg();
            if (update.Entries.Count > 0)
            {
                msg.EntityData.Add(AttributesData(update.DeviceId, AttributeScope.Shared, update.Entries.Select(e => e.Entry)));
            }
            if (update.DeletedKeys.Count > 0)
            {
                var (msb, lsb) = EdgeProto.Split(update.DeviceId);
                var delete = new AttributeDeleteMsg { Scope = EdgeProto.ScopeName(AttributeScope.Shared) };
                delete.AttributeNames.Add(update.DeletedKeys);
                msg.EntityData.Add(new EntityDataProto
                {
                    EntityIdMSB = msb,
                    EntityIdLSB = lsb,
                    EntityType = EdgeProto.DeviceEntityType,
                    AttributeDeleteMsg = delete,
                });
            }
            return msg;
        }, update.Origin);
    }

    public void Dispose()
    {
        foreach (var subscription in _attributeSubscriptions.Values)
        {
            subscription.Dispose();
        }
        _attributeSubscriptions.Clear();
    }
}
