using Google.Protobuf;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Grpc.Core;
using Perf.Api.Edge.Protos;
using Perf.Api.Hosting;
using Perf.Core;
using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Api.Edge;

/// <summary>
/// <c>edge.EdgeRpcService/handleMsgs</c>: one bidirectional stream per edge. The first message must be
/// a connect; then uplinks are processed concurrently (up to <see cref="EdgeOptions.UplinkPipelineDepth"/>)
/// and answered in arrival order, each only after its data is durable, while the connection's pump
/// delivers the edge's downlink queue.
/// </summary>
public sealed class EdgeRpcService(EdgeHub hub) : Protos.EdgeRpcService.EdgeRpcServiceBase
{
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(30);

    /// <summary>When a malformed stream was last logged at warning level (Stopwatch ticks); the others go to debug.</summary>
    private static long s_lastMalformedWarning;

    public override async Task handleMsgs(IAsyncStreamReader<RequestMsg> requestStream, IServerStreamWriter<ResponseMsg> responseStream, ServerCallContext context)
    {
        try
        {
            await HandleAsync(requestStream, responseStream, context);
        }
        catch (InvalidProtocolBufferException e)
        {
            // Anyone who reaches the port can send bytes that are not our messages: the stream ends with
            // InvalidArgument, and the log gets one line without a stack trace, at most one warning per 10 s.
            var now = System.Diagnostics.Stopwatch.GetTimestamp();
            var last = Interlocked.Read(ref s_lastMalformedWarning);
            var warn = System.Diagnostics.Stopwatch.GetElapsedTime(last, now) >= TimeSpan.FromSeconds(10) &&
                Interlocked.CompareExchange(ref s_lastMalformedWarning, now, last) == last;
            EdgeLog.Malformed(hub.Logger, warn ? LogLevel.Warning : LogLevel.Debug, context.Peer, e.Message);
            throw new RpcException(new Status(StatusCode.InvalidArgument, "malformed message: " + e.Message));
        }
    }

    private async Task HandleAsync(IAsyncStreamReader<RequestMsg> requestStream, IServerStreamWriter<ResponseMsg> responseStream, ServerCallContext context)
    {
        // Only the edge port reaches this service (EdgeDoorFilter, ahead of routing).
        var peer = context.Peer;
        var logger = hub.Logger;
        using (var connectTimeout = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken))
        {
            // A stream that never says who it is must not hold a slot forever.
            connectTimeout.CancelAfter(ConnectTimeout);
            try
            {
                if (!await requestStream.MoveNext(connectTimeout.Token))
                {
                    return;
                }
            }
            catch (OperationCanceledException) when (!context.CancellationToken.IsCancellationRequested)
            {
                throw new RpcException(new Status(StatusCode.DeadlineExceeded, "no connect request"));
            }
        }
        var first = requestStream.Current;
        if (first.MsgType != RequestMsgType.ConnectRpcMessage || first.ConnectRequestMsg is not { } connect)
        {
            await RejectAsync(responseStream, ConnectResponseCode.BadCredentials, "the first message must be a connect request", peer,
                StatusCode.FailedPrecondition);
            return;
        }
        if (!hub.Engine.IsReady)
        {
            await RejectAsync(responseStream, ConnectResponseCode.ServerUnavailable, "storage is not ready", peer, StatusCode.Unavailable);
            return;
        }
        if (hub.Engine.Registry.FindEdgeByRoutingKey(connect.EdgeRoutingKey) is not { } edge || !SecretMatches(edge.Secret, connect.EdgeSecret))
        {
            await RejectAsync(responseStream, ConnectResponseCode.BadCredentials, "bad routing key or secret", peer, StatusCode.Unauthenticated);
            return;
        }

        var version = (int)connect.EdgeVersion;
        var edgeMax = connect.HasMaxInboundMessageSize && connect.MaxInboundMessageSize > 0
            ? connect.MaxInboundMessageSize
            : hub.Options.DefaultEdgeInboundMessageSize;
        var connection = new EdgeConnection(hub, edge, version, edgeMax, peer, responseStream, context.CancellationToken);
        var firstConnect = !hub.Engine.Edges.GetConnectionInfo(edge.Id).SyncQueued;
        await connection.WriteAsync(new ResponseMsg
        {
            ConnectResponseMsg = new ConnectResponseMsg
            {
                ResponseCode = ConnectResponseCode.Accepted,
                Configuration = EdgeProto.Configuration(edge),
                MaxInboundMessageSize = hub.Options.MaxInboundMessageSize,
            },
        });
        EdgeLog.Connected(logger, edge.Id, edge.Name, peer, connect.EdgeVersion.ToString());

        hub.Attach(connection);
        var responder = Channel.CreateBounded<Task<UplinkResponseMsg>>(new BoundedChannelOptions(hub.Options.UplinkPipelineDepth)
        {
            SingleReader = true,
            SingleWriter = true,
        });
        Task? pump = null;
        Task? respond = null;
        try
        {
            if (firstConnect)
            {
                connection.FirstConnectSync = 1;
                Interlocked.Exchange(ref connection.PendingSyncCompletedSeq, await hub.QueueFullSyncAsync(edge.Id, version));
            }
            await hub.Engine.Edges.RecordConnectAsync(edge.Id, version, syncQueued: true);
            connection.RegisterSessions();
            pump = Task.Run(connection.PumpAsync);
            respond = Task.Run(() => RespondAsync(connection, responder.Reader));

            var ct = connection.Closed;
            while (await requestStream.MoveNext(ct))
            {
                var request = requestStream.Current;
                if (request.DownlinkResponseMsg is { } ack)
                {
                    connection.OnDownlinkResponse(ack);
                }
                if (request.UplinkMsg is { } uplink)
                {
                    await responder.Writer.WriteAsync(ProcessUplinkAsync(connection, uplink), ct);
                }
                if (request.MsgType == RequestMsgType.SyncRequestRpcMessage || request.SyncRequestMsg is not null)
                {
                    await OnSyncRequestAsync(connection, request.SyncRequestMsg);
                }
            }
        }
        catch (OperationCanceledException) when (connection.IsClosed)
        {
        }
        catch (IOException) when (context.CancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            responder.Writer.TryComplete();
            if (respond is not null)
            {
                await respond;
            }
            connection.Close();
            if (pump is not null)
            {
                await pump;
            }
            connection.UnregisterSessions();
            hub.Detach(connection);
            EdgeLog.Disconnected(logger, edge.Id);
        }
    }

    private async Task RejectAsync(IServerStreamWriter<ResponseMsg> stream, ConnectResponseCode code, string reason, string peer, StatusCode status)
    {
        EdgeLog.Rejected(hub.Logger, code.ToString(), peer, reason);
        await stream.WriteAsync(new ResponseMsg { ConnectResponseMsg = new ConnectResponseMsg { ResponseCode = code, ErrorMsg = reason } });
        throw new RpcException(new Status(status, reason));
    }

    private static bool SecretMatches(string expected, string given) => SecretComparer.FixedTimeEquals(expected, given);

    private async Task OnSyncRequestAsync(EdgeConnection connection, SyncRequestMsg? request)
    {
        // An absent fullSync (older edges) means a full sync, as in the reference.
        var full = request is null || !request.HasFullSync || request.FullSync;
        if (!full)
        {
            await hub.QueueSyncCompletedAsync(connection.EdgeId);
            return;
        }
        if (Interlocked.Exchange(ref connection.FirstConnectSync, 0) == 1 || Interlocked.Read(ref connection.PendingSyncCompletedSeq) != 0)
        {
            // The edge's automatic request right after its first connect (that sync is already queued, and may even be
            // done by now), or a repeat while a full sync is still on its way: every device would be sent twice.
            return;
        }
        Interlocked.Exchange(ref connection.PendingSyncCompletedSeq, await hub.QueueFullSyncAsync(connection.EdgeId, connection.EdgeVersion));
    }

    /// <summary>Writes uplink responses in the order the uplinks arrived.</summary>
    private static async Task RespondAsync(EdgeConnection connection, ChannelReader<Task<UplinkResponseMsg>> reader)
    {
        try
        {
            await foreach (var pending in reader.ReadAllAsync())
            {
                var response = await pending;
                if (!connection.IsClosed)
                {
                    await connection.WriteAsync(new ResponseMsg { UplinkResponseMsg = response });
                }
            }
        }
        catch (Exception) when (connection.IsClosed)
        {
        }
    }

    private async Task<UplinkResponseMsg> ProcessUplinkAsync(EdgeConnection connection, UplinkMsg uplink)
    {
        var id = uplink.UplinkMsgId;
        string? error;
        if (!connection.TryTakeUplinkSlot())
        {
            // The reference's RATE_LIMIT_REACHED: the edge backs off 60 s only when the text contains it.
            error = "Rate limit reached";
        }
        else
        {
            var events = uplink.EntityData.Count + uplink.DeviceUpdateMsg.Count + uplink.DeviceCredentialsUpdateMsg.Count + uplink.DeviceRpcCallMsg.Count + uplink.AttributesRequestMsg.Count;
            if (events > hub.Options.MaxUplinkBatch)
            {
                error = $"{events} events in one uplink; at most {hub.Options.MaxUplinkBatch}";
            }
            else
            {
                try
                {
                    error = await ApplyUplinkAsync(connection, uplink);
                }
                catch (Exception e)
                {
                    error = e.Message;
                }
            }
        }
        if (error is not null)
        {
            EdgeLog.UplinkRejected(hub.Logger, connection.EdgeId, id, error);
        }
        EdgeMetrics.Uplink(uplink.CalculateSize(), error is null);
        return new UplinkResponseMsg { UplinkMsgId = id, Success = error is null, ErrorMsg = error ?? string.Empty };
    }

    /// <summary>Applies every event; null when all are durable, else the first error.</summary>
    private async Task<string?> ApplyUplinkAsync(EdgeConnection connection, UplinkMsg uplink)
    {
        var engine = hub.Engine;
        var edge = connection.Edge;
        var pending = new List<Task<string?>>(uplink.EntityData.Count + uplink.DeviceUpdateMsg.Count);
        string? error = null;
        Dictionary<Guid, List<TsKvEntry>>? telemetryByDevice = null;

        // Devices first, then their credentials, then data: an uplink may carry a new device with its data.
        foreach (var update in uplink.DeviceUpdateMsg)
        {
            error ??= await ApplyDeviceUpdateAsync(edge, update);
        }

        foreach (var update in uplink.DeviceCredentialsUpdateMsg)
        {
            error ??= await ApplyCredentialsUpdateAsync(edge, update);
        }

        foreach (var data in uplink.EntityData)
        {
            var deviceId = EdgeProto.Join(data.EntityIdMSB, data.EntityIdLSB);
            // As the reference's BaseTelemetryProcessor: data of an entity the server does not have (a device deleted
            // meanwhile, or an entity type it keeps no data for) is skipped, not refused: a refusal makes the edge
            // retry the whole pack of up to 50 events, so one deleted device would stall its upload.
            if (data.EntityType is { Length: > 0 } type && type != EdgeProto.DeviceEntityType)
            {
                EdgeLog.Skipped(hub.Logger, edge.Id, uplink.UplinkMsgId, type, deviceId);
                continue;
            }
            if (engine.Registry.GetDevice(deviceId) is not { } device || device.TenantId != edge.TenantId)
            {
                EdgeLog.Skipped(hub.Logger, edge.Id, uplink.UplinkMsgId, EdgeProto.DeviceEntityType, deviceId);
                continue;
            }
            if (data.PostTelemetryMsg is { } telemetry)
            {
                // One log record per device per uplink: a batch of 50 single-entry events for one device
                // costs one record and one waiter instead of 50.
                if (telemetryByDevice is null || !telemetryByDevice.TryGetValue(deviceId, out var entries))
                {
                    telemetryByDevice ??= [];
                    telemetryByDevice[deviceId] = entries = [];
                }
                if (!EdgeProto.TryAddTelemetry(entries, telemetry, engine.Keys, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), out var kvError))
                {
                    error ??= $"device {deviceId}: {kvError}";
                    continue;
                }
            }
            if (data.PostAttributesMsg is { } posted)
            {
                pending.Add(SaveAttributesAsync(deviceId, data, posted, AttributeScope.Client));
            }
            if (data.AttributesUpdatedMsg is { } updated)
            {
                pending.Add(SaveAttributesAsync(deviceId, data, updated, AttributeScope.Server));
            }
            if (data.AttributeDeleteMsg is { } delete)
            {
                if (EdgeProto.Scope(delete.Scope, AttributeScope.Server) is not { } scope)
                {
                    error ??= $"unknown scope {delete.Scope}";
                    continue;
                }
                pending.Add(Done(engine.Attributes.DeleteAsync(deviceId, scope, [.. delete.AttributeNames], edge.Id)));
            }
        }

        if (telemetryByDevice is not null)
        {
            foreach (var (deviceId, entries) in telemetryByDevice)
            {
                // An uplink may carry up to the advertised 4 MiB for one device: saved in parts that each fit a log
                // record. A single value too large for any record is refused with the log's reason.
                foreach (var part in InRecordSizedParts(entries))
                {
                    pending.Add(Done(engine.Telemetry.SaveAsync(deviceId, part))); // false: deleted meanwhile, skipped as above
                }
            }
        }


        foreach (var call in uplink.DeviceRpcCallMsg)
        {
            var deviceId = EdgeProto.Join(call.DeviceIdMSB, call.DeviceIdLSB);
            if (call.ResponseMsg is { Error.Length: > 0 } failure)
            {
                // The edge's device did not answer or was not connected: the reference's RpcError, not a reply.
                engine.Rpc.CompleteFailure(deviceId, call.RequestId, EdgeProto.RpcFailure(failure.Error), failure.Error);
            }
            else if (call.ResponseMsg is { } reply)
            {
                // A reply after the caller gave up is not an error of the edge's message.
                engine.Rpc.CompleteReply(deviceId, call.RequestId, reply.Response);
            }
            else if (call.RequestMsg is not null)
            {
                if (engine.Registry.GetDevice(deviceId) is not { } device || device.TenantId != edge.TenantId)
                {
                    EdgeLog.Skipped(hub.Logger, edge.Id, uplink.UplinkMsgId, EdgeProto.DeviceEntityType, deviceId);
                    continue;
                }
                // A client-side RPC of a device behind the edge: acknowledged now, answered by a downlink
                // (the handler may take up to the client RPC timeout).
                _ = AnswerClientRpcAsync(connection, device, call);
            }
        }

        foreach (var request in uplink.AttributesRequestMsg)
        {
            var deviceId = EdgeProto.Join(request.EntityIdMSB, request.EntityIdLSB);
            if (engine.Registry.GetDevice(deviceId) is not { } device || device.TenantId != edge.TenantId)
            {
                EdgeLog.Skipped(hub.Logger, edge.Id, uplink.UplinkMsgId, EdgeProto.DeviceEntityType, deviceId);
                continue;
            }
            var scopes = EdgeProto.Scope(request.Scope, AttributeScope.Shared) is { } s ? [s] : new[] { AttributeScope.Server, AttributeScope.Shared };
            foreach (var scope in scopes)
            {
                pending.Add(Done(hub.QueueAttributesAsync(edge.Id, deviceId, scope)));
            }
        }

        foreach (var task in pending)
        {
            error ??= await task;
        }
        return error;

        async Task<string?> SaveAttributesAsync(Guid deviceId, EntityDataProto data, Perf.Api.Edge.Protos.Transport.PostAttributeMsg msg, AttributeScope fallback)
        {
            if (EdgeProto.Scope(data.PostAttributeScope, fallback) is not { } scope)
            {
                return $"unknown scope {data.PostAttributeScope}";
            }
            var entries = new KvEntry[msg.Kv.Count];
            for (var i = 0; i < entries.Length; i++)
            {
                if (!EdgeProto.TryToKv(msg.Kv[i], engine.Keys, out entries[i], out var kvError))
                {
                    return $"device {deviceId}: {kvError}";
                }
            }
            // False only for a device deleted meanwhile: skipped, as above.
            await engine.Attributes.SaveAsync(deviceId, scope, entries, data.HasAttributeTs ? data.AttributeTs : null, edge.Id);
            return null;
        }
    }

    /// <summary>Consecutive parts of <paramref name="entries"/> of about 1 MiB each (UTF-16 lengths count double), at least one entry each.</summary>
    private static IEnumerable<List<TsKvEntry>> InRecordSizedParts(List<TsKvEntry> entries)
    {
        const long Budget = 1 << 20;
        var part = new List<TsKvEntry>();
        long size = 0;
        foreach (var entry in entries)
        {
            var entrySize = 16 + 2L * (entry.Entry.Key.Length + (entry.Entry.Text?.Length ?? 0));
            if (part.Count > 0 && size + entrySize > Budget)
            {
                yield return part;
                part = [];
                size = 0;
            }
            part.Add(entry);
            size += entrySize;
        }
        if (part.Count > 0)
        {
            yield return part;
        }
    }

    private static async Task<string?> Done(Task task)
    {
        await task;
        return null;
    }

    private async Task AnswerClientRpcAsync(EdgeConnection connection, Device device, DeviceRpcCallMsg call)
    {
        var reply = call.Clone();
        reply.RequestMsg = null;
        try
        {
            var result = await hub.Engine.DeviceApi.ClientRpcAsync(device, new System.Buffers.ReadOnlySequence<byte>(EdgeProto.ClientRpcRequest(call.RequestMsg)),
                connection.Closed);
            reply.ResponseMsg = result.Result.Status == UplinkStatus.Ok
                ? new RpcResponseMsg { Response = result.ResponseJson ?? "{}" }
                : new RpcResponseMsg { Error = result.Result.Reason ?? result.Result.Status.ToString() };
        }
        catch (Exception e)
        {
            reply.ResponseMsg = new RpcResponseMsg { Error = e.Message };
        }
        var msg = new DownlinkMsg();
        msg.DeviceRpcCallMsg.Add(reply);
        try
        {
            await hub.Enqueue(connection.EdgeId, msg);
        }
        catch (Exception e)
        {
            EdgeLog.EventFailed(hub.Logger, connection.EdgeId, device.Id, e);
        }
    }

    /// <summary>
    /// A device created, changed or removed on the edge, as the reference's <c>BaseDeviceProcessor.saveOrUpdateDevice</c>:
    /// the server keeps the edge's id, and a name another device of the tenant has gets a unique suffix, which goes
    /// back to the edge. The device is assigned to the edge without being sent back to it, and its credentials come
    /// from the edge (<see cref="ApplyCredentialsUpdateAsync"/>). Removal on the edge unassigns it (the server's device stays).
    /// </summary>
    private async Task<string?> ApplyDeviceUpdateAsync(Perf.Core.Domain.Edge edge, DeviceUpdateMsg update)
    {
        var registry = hub.Engine.Registry;
        var id = EdgeProto.Join(update.IdMSB, update.IdLSB);
        if (update.MsgType == UpdateMsgType.EntityDeletedRpcMessage)
        {
            await hub.SetAssignmentAsync(edge.Id, id, assigned: false);
            return null;
        }
        if (update.MsgType is not (UpdateMsgType.EntityCreatedRpcMessage or UpdateMsgType.EntityUpdatedRpcMessage))
        {
            return $"device update type {update.MsgType} is not supported";
        }
        if (!EdgeProto.TryReadDeviceEntity(update.Entity, out var entity, out var entityError))
        {
            return entityError;
        }
        var (name, type, label, info) = entity;
        var existing = registry.GetDevice(id);
        if (existing is not null && existing.TenantId != edge.TenantId)
        {
            return $"device id {id} is taken";
        }
        var renamed = registry.FindDeviceByName(edge.TenantId, name) is { } sameName && sameName.Id != id;
        if (renamed)
        {
            name = name + "_" + RandomNumberGenerator.GetString("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 15);
        }
        var result = existing is not null
            ? await registry.UpdateDeviceAsync(id, name, type, label, info, edge.Id)
            : await registry.CreateDeviceAsync(edge.TenantId, name, type, label, info, id: id);
        if (!result.IsOk)
        {
            return result.Error;
        }
        await hub.SetAssignmentAsync(edge.Id, id, assigned: true, tellTheEdge: false);
        if (renamed)
        {
            await hub.QueueDeviceUpdateAsync(edge.Id, result.Value!);
        }
        return null;
    }

    /// <summary>The credentials an edge gives a device of its tenant (the reference's processDeviceCredentialsMsgFromEdge).</summary>
    private async Task<string?> ApplyCredentialsUpdateAsync(Perf.Core.Domain.Edge edge, DeviceCredentialsUpdateMsg update)
    {
        if (!EdgeProto.TryReadCredentialsEntity(update.Entity, out var credentials, out var error))
        {
            return error;
        }
        var registry = hub.Engine.Registry;
        if (registry.GetDevice(credentials.DeviceId) is not { } device || device.TenantId != edge.TenantId)
        {
            EdgeLog.Skipped(hub.Logger, edge.Id, 0, EdgeProto.DeviceEntityType, credentials.DeviceId);
            return null;
        }
        var result = await registry.SaveCredentialsAsync(device.Id, credentials.Type, credentials.CredentialsId, credentials.CredentialsValue);
        return result.IsOk ? null : $"device {device.Id}: {result.Error}";
    }
}
