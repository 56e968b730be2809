using System.Buffers;
using System.Buffers.Text;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Perf.Core;
using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// One MQTT connection and, once CONNECT succeeds, the device's session. The read loop parses every
/// complete packet of a read, dispatches uplinks to the core, then awaits their outcomes in order and
/// writes PUBACKs. All writes (read loop and pushes from other threads) go to the pipe under
/// <see cref="_writeLock"/>; <see cref="RequestFlush"/> makes one caller at a time the flusher, so
/// flushes never overlap. Timers (connect timeout, keep-alive, re-sends) are the handler's shared
/// <see cref="MqttConnectionTicker"/>.
/// </summary>
/// <remarks>
/// Issue 12 (memory per idle connection, measured with samples/HeapCensus): everything an idle
/// connection does not need is created on first use (the JSON writer, the in-flight downlink map, the
/// pending-uplink list) or not at all (the connection id string, built only when logged; no flush loop,
/// no semaphore, no timer, no cancellation source).
/// </remarks>
internal sealed partial class MqttConnection : IDeviceSession
{
    private readonly ConnectionContext _connection;
    private readonly MqttDoorServices _door;
    private readonly PipeWriter _output;
    /// <summary>The lean transport's writer (null over TLS or Kestrel's socket transport): flushes commit under the write lock and send outside it.</summary>
    private readonly LeanSocketWriter? _leanOutput;
    private readonly Lock _writeLock = new();
    /// <summary>Cancelled at shutdown; created by the first client-side RPC (the only request that outlives its read).</summary>
    private CancellationTokenSource? _closed;
    private Dictionary<ushort, Inflight>? _inflight;
    // Created on the first downlink (ResetJson): most devices only publish, and 9,000 idle connections
    // each holding a 512 B buffer and a writer cost about 0.8 KB apiece (issue 12's memory target).
    private ArrayBufferWriter<byte> _json = null!;
    private Utf8JsonWriter _jsonWriter = null!;
    private readonly long _startedAt = Environment.TickCount64;

    private Device? _device;
    private string? _deviceName;
    private bool _registered;
    private ushort _keepAliveSeconds;
    private long _lastActivity = Environment.TickCount64;
    /// <summary>Flush requests not yet served; the caller that moves it from 0 is the flusher (<see cref="RequestFlush"/>).</summary>
    private int _flushRequests;
    private bool _outputClosed;
    private volatile bool _closing;
    private string? _closeReason;
    private TopicSubscription _subscriptions;
    // The topics subscribed at QoS 1: what the server publishes on them goes at QoS 1, as the reference publishes at
    // the subscribed QoS (attribute pushes, RPC requests, responses, firmware chunks, gateway downlinks).
    private TopicSubscription _qos1;
    private bool _unknownTopicLogged;
    private ushort _nextPacketId;
    private byte[]? _topicScratch;
    private Dictionary<string, GatewayChildSession>? _children;
    private SessionLimiters _limiters;

    /// <summary>Set when an uplink was refused (rate limit): packets after it in the buffer are not dispatched.</summary>
    private bool _stopReading;

    public MqttConnection(ConnectionContext connection, MqttDoorServices door)
    {
        _connection = connection;
        _door = door;
        _output = connection.Transport.Output;
        _leanOutput = _output as LeanSocketWriter;
    }

    // Links of the ticker's list (owned by MqttConnectionTicker, under its lock).
    internal MqttConnection? TickerNext;
    internal MqttConnection? TickerPrevious;
    internal bool TickerLinked;

    public Guid DeviceId => _device?.Id ?? Guid.Empty;
    public string Transport => "MQTT";
    /// <summary>For logs only: built on each use (connect, close, errors) rather than held by every idle connection.</summary>
    public string ConnectionId => _connection.RemoteEndPoint is { } ep ? $"{ep}/{_connection.ConnectionId}" : _connection.ConnectionId;
    public bool WantsAttributeUpdates => (_subscriptions & (TopicSubscription.AttributeUpdates | TopicSubscription.AttributeUpdatesV2)) != 0;
    public bool WantsRpc => (_subscriptions & (TopicSubscription.RpcRequests | TopicSubscription.RpcRequestsV2)) != 0;

    private const string Door = "mqtt";

    /// <summary>Largest remaining length accepted: the payload limit plus room for a topic and packet id.</summary>
    private int MaxPacketSize => _door.Options.MaxPayloadSize + 1024;

    /// <summary>
    /// The connection's life: reads until the peer leaves, the connection closes or a protocol violation, then shuts down.
    /// </summary>
    /// <remarks>
    /// Issue 12 (memory per idle connection): an idle connection waits here, in this method's state machine, which
    /// holds only the reader and the awaiters. A read is handled by <see cref="HandleReadAsync"/>, whose state (the
    /// buffer, the packet) exists only while a read is handled: it completes synchronously unless a handler waits,
    /// and when it waits its box comes from a pool. This state machine was 240 bytes with the buffer, the read result
    /// and the packet in it.
    /// </remarks>
    public async Task RunAsync()
    {
        var input = _connection.Transport.Input;
        MqttMetrics.ConnectionOpened();
        _door.Ticker.Add(this);
        try
        {
            while (!_closing && await HandleReadAsync(input, await input.ReadAsync()))
            {
            }
        }
        catch (MqttProtocolException ex)
        {
            // Uplinks still committing are taken by PumpAcks as they complete, without a PUBACK (closing).
            OnViolation(ex.Error);
        }
        catch (ConnectionResetException)
        {
        }
        catch (ConnectionAbortedException)
        {
            // The host stopping (Kestrel aborts what is still open after the grace period) or our own abort of a
            // connection that does not read: an end like any other, not an unhandled error in the log.
        }
        catch (IOException)
        {
        }
        finally
        {
            await ShutdownAsync();
            MqttMetrics.ConnectionClosed();
        }
    }

    /// <summary>One read: dispatches its complete packets and consumes them; false when the connection is to end.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> HandleReadAsync(PipeReader input, ReadResult result)
    {
        if (result.IsCanceled || _closing)
        {
            return false;
        }

        var buffer = result.Buffer;
        Volatile.Write(ref _lastActivity, Environment.TickCount64);
        try
        {
            // Every complete packet of this read is dispatched; the PUBACKs follow from PumpAcks as the
            // commits complete, while the connection goes back to reading (a device's next messages join the
            // next group commit instead of waiting in the socket for this batch's). Only a full
            // in-flight window (or a refused uplink) makes the reader wait for acknowledgements.
            while (!_closing && !_stopReading && TryParse(ref buffer, out var packet))
            {
                await HandlePacketAsync(packet);
                if (PendingAcks >= _door.Options.MaxInflight)
                {
                    PumpAcks();
                    await WaitForAcksAsync(Math.Max(0, _door.Options.MaxInflight - 1));
                }
            }

            PumpAcks();
            if (_stopReading)
            {
                // The refused uplink's outcome closes the connection after the PUBACKs before it.
                await WaitForAcksAsync(0);
            }
        }
        finally
        {
            input.AdvanceTo(buffer.Start, buffer.End);
        }

        RequestFlush();
        if (result.IsCompleted)
        {
            // The peer finished sending: its PUBACKs go out before the close.
            await WaitForAcksAsync(0);
            return false;
        }

        return true;
    }

    private bool TryParse(ref ReadOnlySequence<byte> buffer, out MqttPacket packet)
    {
        var reader = new SequenceReader<byte>(buffer);
        if (!MqttPacketReader.TryRead(ref reader, MaxPacketSize, out packet))
        {
            return false;
        }

        MqttMetrics.PacketReceived(packet.Type, reader.Consumed);
        buffer = buffer.Slice(reader.Position);
        return true;
    }

    private ValueTask HandlePacketAsync(in MqttPacket packet)
    {
        if (_device is null && packet.Type != MqttPacketType.Connect)
        {
            MqttProtocolException.Throw(MqttProtocolError.FirstPacketNotConnect);
        }

        switch (packet.Type)
        {
            case MqttPacketType.Publish:
                return HandlePublishAsync(packet);
            case MqttPacketType.Connect:
                HandleConnect(packet.Connect!);
                break;
            case MqttPacketType.PubAck:
                Inflight acked;
                bool found;
                lock (_writeLock)
                {
                    acked = default;
                    found = _inflight is { } inflight && inflight.Remove(packet.PacketId, out acked);
                    if (found)
                    {
                        ArrayPool<byte>.Shared.Return(acked.Frame);
                    }
                }

                if (found && acked.RpcRequestId != 0 && _device is { } device)
                {
                    // The PUBACK of an RPC request is its delivery acknowledgement (persistent RPC -> DELIVERED).
                    _door.Api.RpcDelivered(device, acked.RpcRequestId);
                }

                break;
            case MqttPacketType.Subscribe:
                HandleSubscribe(packet);
                break;
            case MqttPacketType.Unsubscribe:
                HandleUnsubscribe(packet);
                break;
            case MqttPacketType.PingReq:
                Write(MqttPacketWriter.PingResp);
                break;
            case MqttPacketType.Disconnect:
                _closing = true;
                break;
            default:
                // CONNACK, SUBACK, UNSUBACK, PINGRESP are server-to-client; QoS 2 flows are not offered.
                MqttProtocolException.Throw(MqttProtocolError.UnexpectedPacket);
                break;
        }

        return ValueTask.CompletedTask;
    }

    private void HandleConnect(MqttConnect connect)
    {
        if (_device is not null)
        {
            MqttProtocolException.Throw(MqttProtocolError.SecondConnect);
        }

        _keepAliveSeconds = connect.KeepAliveSeconds;
        var remote = (_connection.RemoteEndPoint as System.Net.IPEndPoint)?.Address;
        if (_door.Guard is not null && _door.Guard.IsBlocked(Door, remote))
        {
            // Blocked for wrong credentials: refused without looking at these.
            Refuse(MqttConnectReturnCode.NotAuthorized);
            return;
        }

        if (!TryAuthenticateByCertificate(out var device))
        {
            // The user name as an access token first, then the reference's MQTT basic credentials (client id, user
            // name, password), which answer nothing at once when no device has any.
            var userName = connect.UserName;
            device = userName is { Length: > 0 } ? _door.Api.Authenticate(userName) : null;
            device ??= _door.Api.AuthenticateMqttBasic(connect.ClientId, userName, connect.Password);
            if (device is null && userName is not { Length: > 0 })
            {
                _door.Guard?.AuthFailed(Door, remote, "empty user name");
                Refuse(MqttConnectReturnCode.BadUserNameOrPassword);
                return;
            }
        }

        if (device is null)
        {
            _door.Guard?.AuthFailed(Door, remote, _connection.Features.Get<Microsoft.AspNetCore.Http.Features.ITlsConnectionFeature>()?.ClientCertificate is null ? "unknown access token" : "unknown client certificate");
            Refuse(MqttConnectReturnCode.NotAuthorized);
            return;
        }

        _device = device;
        _deviceName = device.Name;
        _limiters = _door.Limits.For(device);
        _door.Sessions.Register(this);
        _registered = true;
        lock (_writeLock)
        {
            if (!_outputClosed)
            {
                MqttPacketWriter.WriteConnAck(_output, MqttConnectReturnCode.Accepted);
            }
        }

        MqttLog.Connected(_door.Logger, ConnectionId, device.Name, connect.ClientId, connect.KeepAliveSeconds);
    }

    private void Refuse(MqttConnectReturnCode code)
    {
        MqttLog.ConnectRefused(_door.Logger, ConnectionId, code);
        _door.Guard?.Report(Door, "connections refused at CONNECT", $"{ConnectionId}: CONNACK {code}");
        lock (_writeLock)
        {
            if (!_outputClosed)
            {
                MqttPacketWriter.WriteConnAck(_output, code);
            }
        }

        _closing = true;
    }

    private void HandleSubscribe(in MqttPacket packet)
    {
        Span<byte> codes = stackalloc byte[64];
        int count = 0;
        byte[]? rented = null;
        var before = _subscriptions;
        var filters = new MqttTopicFilterReader(packet);
        while (filters.TryNext(out var filter, out byte qos))
        {
            if (count == codes.Length)
            {
                rented = ArrayPool<byte>.Shared.Rent(codes.Length * 2);
                codes.CopyTo(rented);
                codes = rented;
            }

            var kind = MqttTopics.Classify(TopicSpan(filter));
            byte granted = Math.Min(qos, (byte)1);
            if (kind == TopicSubscription.None)
            {
                codes[count++] = 0x80;
                continue;
            }

            _qos1 = granted == 1 ? _qos1 | kind : _qos1 & ~kind;
            _subscriptions |= kind;
            codes[count++] = granted;
        }

        lock (_writeLock)
        {
            if (!_outputClosed)
            {
                MqttPacketWriter.WriteSubAck(_output, packet.PacketId, codes[..count]);
            }
        }

        if (rented is not null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }

        // After the SUBACK, so a queued RPC the core now delivers follows it on the wire.
        if ((_subscriptions & ~before) != 0)
        {
            NotifySubscriptionsChanged();
        }
    }

    /// <summary>Tells the core this session (and, for a gateway, each child) now wants more, so RPCs queued while it did not are delivered.</summary>
    private void NotifySubscriptionsChanged()
    {
        _door.Sessions.SubscriptionsChanged(this);
        if (_children is not null && (_subscriptions & TopicSubscription.Gateway) != 0)
        {
            foreach (var child in _children.Values)
            {
                _door.Sessions.SubscriptionsChanged(child);
            }
        }
    }

    private void HandleUnsubscribe(in MqttPacket packet)
    {
        var filters = new MqttTopicFilterReader(packet);
        while (filters.TryNext(out var filter, out _))
        {
            var kind = MqttTopics.Classify(TopicSpan(filter));
            _subscriptions &= ~kind;
            _qos1 &= ~kind;
        }

        lock (_writeLock)
        {
            if (!_outputClosed)
            {
                MqttPacketWriter.WriteUnsubAck(_output, packet.PacketId);
            }
        }
    }

    private ValueTask HandlePublishAsync(in MqttPacket packet)
    {
        if (packet.QoS == 2)
        {
            MqttProtocolException.Throw(MqttProtocolError.QoS2NotSupported);
        }

        if (packet.Payload.Length > _door.Options.MaxPayloadSize)
        {
            MqttProtocolException.Throw(MqttProtocolError.PayloadTooLarge);
        }

        var device = _device!;
        var topic = TopicSpan(packet.Topic);
        var route = MqttTopics.Route(topic, out int id, out bool v2);
        byte qos = (byte)packet.QoS;
        ushort packetId = packet.PacketId;
        if (_limiters.TryAcquire() is { } exceeded)
        {
            // The reference drops the connection without PUBACK; PUBACKs of earlier accepted uplinks still go out first.
            Enqueue(new ValueTask<UplinkResult>(new UplinkResult(UplinkStatus.RateLimited, "rate limit " + exceeded + " exceeded")), packetId, qos, route);
            _stopReading = true;
            return ValueTask.CompletedTask;
        }

        switch (route)
        {
            case TopicRoute.Telemetry:
                Enqueue(_door.Api.PostTelemetryAsync(device, packet.Payload), packetId, qos, route);
                break;
            case TopicRoute.Attributes:
                Enqueue(_door.Api.PostAttributesAsync(device, packet.Payload), packetId, qos, route);
                break;
            case TopicRoute.RpcReply:
                Enqueue(_door.Api.RpcReplyAsync(device, id, packet.Payload), packetId, qos, route);
                break;
            case TopicRoute.Claim:
                Enqueue(_door.Api.ClaimAsync(device, packet.Payload), packetId, qos, route);
                break;
            case TopicRoute.AttributeRequest:
                MqttJson.ReadAttributeRequest(packet.Payload, out var clientKeys, out var sharedKeys);
                StartRequest(RespondAttributesAsync(_door.Api.RequestAttributesAsync(device, clientKeys, sharedKeys), id, v2));
                Enqueue(new ValueTask<UplinkResult>(UplinkResult.Success), packetId, qos, route);
                break;
            case TopicRoute.ClientRpcRequest:
                HandleClientRpc(_door.Api.ClientRpcAsync(device, packet.Payload, ClosedToken()), id, v2, packetId, qos, route);
                break;
            case TopicRoute.BadRequestId:
                Enqueue(new ValueTask<UplinkResult>(new UplinkResult(UplinkStatus.BadPayload, "the request id at the end of the topic is not a number")), packetId, qos, route);
                break;
            case TopicRoute.FirmwareChunk:
                HandleFirmwareRequest(device, topic, packet.Payload);
                Enqueue(new ValueTask<UplinkResult>(UplinkResult.Success), packetId, qos, route);
                break;
            case TopicRoute.Unknown:
                if (!_unknownTopicLogged)
                {
                    _unknownTopicLogged = true;
                    MqttLog.UnknownTopic(_door.Logger, ConnectionId, _deviceName);
                }

                Enqueue(new ValueTask<UplinkResult>(UplinkResult.Success), packetId, qos, route);
                break;
            default:
                // Gateway API: awaits child resolution inline, the read buffer stays valid until AdvanceTo.
                return HandleGatewayAsync(route, packet, device);
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Writes the PUBACK of one dispatched uplink whose outcome is known; outcomes are taken in arrival order (§4.6).</summary>
    private void Acknowledge(in PendingUplink p, UplinkResult result)
    {
        if (_closing)
        {
            return;
        }

        bool acknowledge = result.Status switch
        {
            UplinkStatus.Ok => true,
            // A reply to an RPC that already timed out, or an uplink of a device deleted meanwhile (its
            // session is closed by the core): nothing a re-send could fix, so acknowledge and go on.
            UplinkStatus.NotFound => true,
            UplinkStatus.BadPayload => p.QoS == 0 || _door.Options.AckInvalidJsonOnQos1,
            _ => false,
        };
        if (!result.IsOk)
        {
            MqttMetrics.UplinkRefused(result.Status, p.Route, acknowledge);
        }

        if (acknowledge)
        {
            if (!result.IsOk)
            {
                MqttLog.UplinkDropped(_door.Logger, ConnectionId, _deviceName, p.Route, result.Status, result.Reason);
            }

            if (p.QoS == 1)
            {
                lock (_writeLock)
                {
                    if (!_outputClosed)
                    {
                        MqttPacketWriter.WritePubAck(_output, p.PacketId);
                        MqttMetrics.PubAckSent();
                    }
                }
            }
        }
        else
        {
            // No PUBACK: the reference drops the connection (rate limit, invalid JSON on QoS 1). The reader may
            // be waiting for data: it is woken to close.
            MqttLog.UplinkRejected(_door.Logger, ConnectionId, _deviceName, p.Route, result.Status, result.Reason);
            _closing = true;
            _connection.Transport.Input.CancelPendingRead();
        }
    }

    private void StartRequest(Task task) =>
        task.ContinueWith(static (t, state) => MqttLog.RequestFailed(((MqttConnection)state!)._door.Logger, t.Exception!, ((MqttConnection)state!).ConnectionId, ((MqttConnection)state!)._deviceName),
            this, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    private async Task RespondAttributesAsync(ValueTask<AttributesReply> request, int id, bool v2)
    {
        var reply = await request;
        Span<byte> topic = stackalloc byte[64];
        int len = MqttTopics.Compose(topic, v2 ? MqttTopics.AttributeResponsePrefixV2 : MqttTopics.AttributeResponsePrefix, id);
        lock (_writeLock)
        {
            ResetJson();
            DeviceJson.WriteAttributesReply(_jsonWriter, reply);
            _jsonWriter.Flush();
            WritePublishLocked(topic[..len], _json.WrittenSpan, QoS(TopicSubscription.AttributeResponses));
        }

        RequestFlush();
    }

    /// <summary>
    /// A client-side RPC: answered on its response topic when the core has it. Invalid JSON at QoS 1 closes the
    /// connection without PUBACK, as on every other topic (README); at QoS 0 the device gets the error as the reply.
    /// </summary>
    private void HandleClientRpc(ValueTask<ClientRpcResult> call, int id, bool v2, ushort packetId, byte qos, TopicRoute route)
    {
        if (call.IsCompletedSuccessfully)
        {
            var done = call.Result;
            if (qos > 0 && done.Result.Status == UplinkStatus.BadPayload)
            {
                Enqueue(new ValueTask<UplinkResult>(done.Result), packetId, qos, route);
                return;
            }

            call = new ValueTask<ClientRpcResult>(done);
        }

        StartRequest(RespondClientRpcAsync(call, id, v2));
        Enqueue(new ValueTask<UplinkResult>(UplinkResult.Success), packetId, qos, route);
    }

    private async Task RespondClientRpcAsync(ValueTask<ClientRpcResult> request, int id, bool v2)
    {
        var result = await request;
        Span<byte> topic = stackalloc byte[64];
        int len = MqttTopics.Compose(topic, v2 ? MqttTopics.RpcResponsePrefixV2 : MqttTopics.RpcResponsePrefix, id);
        var body = result.ResponseJson ?? (result.Result.IsOk ? "{}" : JsonSerializer.Serialize(new { error = result.Result.Reason ?? result.Result.Status.ToString() }));
        lock (_writeLock)
        {
            ResetJson();
            System.Text.EncodingExtensions.GetBytes(System.Text.Encoding.UTF8, body, _json);
            WritePublishLocked(topic[..len], _json.WrittenSpan, QoS(TopicSubscription.RpcResponses));
        }

        RequestFlush();
    }

    private void HandleFirmwareRequest(Device device, ReadOnlySpan<byte> topic, ReadOnlySequence<byte> payload)
    {
        if (!MqttTopics.TryParseFirmwareRequest(topic, out int requestId, out int chunk))
        {
            return;
        }

        Span<byte> digits = stackalloc byte[16];
        int size = _door.Options.MaxPayloadSize;
        if (payload.Length is > 0 and <= 16)
        {
            payload.CopyTo(digits);
            if (Utf8Parser.TryParse(digits[..(int)payload.Length], out int requested, out _) && requested > 0)
            {
                size = Math.Min(requested, _door.Options.MaxPayloadSize);
            }
        }

        StartRequest(RespondFirmwareAsync(_door.Api.GetFirmwareChunkAsync(device, null, null, size, chunk), requestId, chunk));
    }

    private async Task RespondFirmwareAsync(ValueTask<FirmwareChunkResult> request, int requestId, int chunk)
    {
        var result = await request;
        Span<byte> topic = stackalloc byte[80];
        int len;
        if (result.Result.IsOk)
        {
            len = MqttTopics.Compose(topic, MqttTopics.FirmwareResponsePrefix, requestId);
            MqttTopics.ChunkInfix.CopyTo(topic[len..]);
            len += MqttTopics.ChunkInfix.Length;
            Utf8Formatter.TryFormat(chunk, topic[len..], out int written);
            len += written;
        }
        else
        {
            MqttTopics.FirmwareError.CopyTo(topic);
            len = MqttTopics.FirmwareError.Length;
        }

        lock (_writeLock)
        {
            var body = result.Result.IsOk ? result.Data.Span : System.Text.Encoding.UTF8.GetBytes(result.Result.Reason ?? result.Result.Status.ToString());
            WritePublishLocked(topic[..len], body, QoS(TopicSubscription.Firmware));
        }

        RequestFlush();
    }

    // ---- IDeviceSession (called from any thread) ----

    public void PushAttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted)
    {
        if (!WantsAttributeUpdates)
        {
            return;
        }

        bool v1 = (_subscriptions & TopicSubscription.AttributeUpdates) != 0;
        var topic = v1 ? MqttTopics.Attributes : MqttTopics.AttributesV2;
        lock (_writeLock)
        {
            ResetJson();
            DeviceJson.WriteAttributeUpdate(_jsonWriter, updated, deleted);
            _jsonWriter.Flush();
            if (!WritePublishLocked(topic, _json.WrittenSpan, QoS(v1 ? TopicSubscription.AttributeUpdates : TopicSubscription.AttributeUpdatesV2)))
            {
                return;
            }
        }

        RequestFlush();
    }

    public bool PushRpcRequest(RpcRequest request)
    {
        if (!WantsRpc || _closing)
        {
            return false;
        }

        Span<byte> topic = stackalloc byte[64];
        bool v1 = (_subscriptions & TopicSubscription.RpcRequests) != 0;
        int len = MqttTopics.Compose(topic, v1 ? MqttTopics.RpcRequestPrefix : MqttTopics.RpcRequestPrefixV2, request.RequestId);
        bool ok;
        lock (_writeLock)
        {
            ResetJson();
            DeviceJson.WriteRpcRequest(_jsonWriter, request, withId: false);
            _jsonWriter.Flush();
            ok = WritePublishLocked(topic[..len], _json.WrittenSpan, QoS(v1 ? TopicSubscription.RpcRequests : TopicSubscription.RpcRequestsV2), request.RequestId);
        }

        RequestFlush();
        return ok;
    }

    /// <summary>With QoS 1 the PUBACK reports delivery (<see cref="IDeviceApi.RpcDelivered"/>); with QoS 0 the push is the delivery.</summary>
    public bool ReportsRpcDelivery => QoS((_subscriptions & TopicSubscription.RpcRequests) != 0 ? TopicSubscription.RpcRequests : TopicSubscription.RpcRequestsV2) > 0;

    /// <summary>The QoS the client subscribed to <paramref name="kind"/> at (0 when it did not).</summary>
    private byte QoS(TopicSubscription kind) => (_qos1 & kind) != 0 ? (byte)1 : (byte)0;

    public void Close(string reason)
    {
        MqttLog.ClosedByServer(_door.Logger, ConnectionId, _deviceName, reason);
        Abort(reason);
    }

    // ---- writing ----

    private void Write(ReadOnlySpan<byte> bytes)
    {
        lock (_writeLock)
        {
            if (!_outputClosed)
            {
                _output.Write(bytes);
            }
        }
    }

    /// <summary>Every use of <see cref="_json"/> and <see cref="_jsonWriter"/> starts here (under the write lock).</summary>
    private void ResetJson()
    {
        if (_jsonWriter is null)
        {
            _json = new ArrayBufferWriter<byte>(512);
            _jsonWriter = new Utf8JsonWriter(_json);
            return;
        }

        _json.ResetWrittenCount();
        _jsonWriter.Reset(_json);
    }

    /// <summary>Writes a PUBLISH; QoS 1 copies the frame for re-sending until PUBACK. Caller holds the lock.</summary>
    private bool WritePublishLocked(ReadOnlySpan<byte> topic, ReadOnlySpan<byte> payload, byte qos, int rpcRequestId = 0)
    {
        if (_outputClosed || OutputOverflowedLocked())
        {
            return false;
        }

        if (qos == 0)
        {
            MqttPacketWriter.WritePublish(_output, topic, payload);
            MqttMetrics.PublishSent();
            return true;
        }

        var inflight = _inflight ??= [];
        if (inflight.Count >= _door.Options.MaxPendingPerSession)
        {
            _ = Task.Run(() => Close("too many unacknowledged QoS 1 messages"));
            return false;
        }

        // The frame must outlive this call for re-sends: pooled, returned on PUBACK or close.
        ushort id = NextPacketId();
        int size = MqttPacketWriter.PublishSize(topic.Length, payload.Length, 1);
        var frame = ArrayPool<byte>.Shared.Rent(size);
        MqttPacketWriter.WritePublish(frame, topic, payload, 1, id);
        inflight[id] = new Inflight(frame, size, Environment.TickCount64, rpcRequestId);
        _output.Write(frame.AsSpan(0, size));
        MqttMetrics.PublishSent();
        return true;
    }

    /// <summary>
    /// A client that stops reading (half-open socket, stalled device) leaves our flush pending and every
    /// further push in the pipe writer: past <see cref="MqttOptions.MaxOutputBufferSize"/> unflushed bytes the
    /// connection is aborted instead of buffering without bound. Caller holds the write lock.
    /// </summary>
    private bool OutputOverflowedLocked()
    {
        if (!_output.CanGetUnflushedBytes || _output.UnflushedBytes <= _door.Options.MaxOutputBufferSize)
        {
            return false;
        }

        long buffered = _output.UnflushedBytes;
        _outputClosed = true;
        _door.Guard?.Report(Door, "connections closed: output buffer full (client not reading)", $"{ConnectionId} device {_deviceName}: {buffered} bytes unflushed");
        Abort("output buffer full");
        _connection.Abort(new ConnectionAbortedException("output buffer full"));
        return true;
    }

    private ushort NextPacketId()
    {
        do
        {
            _nextPacketId++;
        }
        while (_nextPacketId == 0 || _inflight!.ContainsKey(_nextPacketId));
        return _nextPacketId;
    }

    /// <summary>
    /// Flushes what was written, from any thread. The caller that finds no flush under way becomes the
    /// flusher and flushes until every request made meanwhile is served; the others just count theirs.
    /// On the lean transport the flusher holds the write lock only to commit (a buffer swap) and sends
    /// after releasing it.
    /// A flush that does not complete at once (the socket is behind: output above the pipe's pause
    /// threshold) is awaited off this thread, and the flusher role goes with it.
    /// </summary>
    private void RequestFlush()
    {
        if (Interlocked.Increment(ref _flushRequests) == 1)
        {
            FlushServingRequests();
        }
    }

    private void FlushServingRequests()
    {
        while (true)
        {
            int serving = Volatile.Read(ref _flushRequests);
            ValueTask<FlushResult> flush;
            lock (_writeLock)
            {
                if (_outputClosed)
                {
                    // The output is completed by the shutdown, which commits anything still unflushed.
                    return;
                }

                MqttMetrics.Flushed(_output.CanGetUnflushedBytes ? _output.UnflushedBytes : 0);
                flush = _leanOutput is { } lean ? lean.CommitAsync() : _output.FlushAsync();
            }

            // The socket send happens here, outside the write lock: threads pushing to this device (REST
            // RPC calls, the read loop's PUBACKs) only wait for the commit, never for a syscall.
            _leanOutput?.SendCommitted();

            if (!flush.IsCompletedSuccessfully)
            {
                _ = AwaitFlushAsync(flush, serving);
                return;
            }

            if (!FlushSucceeded(flush.Result) || Interlocked.Add(ref _flushRequests, -serving) == 0)
            {
                return;
            }
        }
    }

    private async Task AwaitFlushAsync(ValueTask<FlushResult> flush, int serving)
    {
        try
        {
            if (!FlushSucceeded(await flush))
            {
                return;
            }
        }
        catch (Exception)
        {
            Abort("flush failed");
            return;
        }

        if (Interlocked.Add(ref _flushRequests, -serving) != 0)
        {
            FlushServingRequests();
        }
    }

    private bool FlushSucceeded(FlushResult result)
    {
        if (result.IsCompleted || result.IsCanceled)
        {
            Abort("output completed");
            return false;
        }

        return true;
    }

    /// <summary>Read-only check under the ticker's lock: does <see cref="OnTimer"/> have anything to do?</summary>
    internal bool IsTimerDue(long now)
    {
        if (_closing)
        {
            return false;
        }

        if (_device is null)
        {
            return now - _startedAt > (long)_door.Options.ConnectTimeout.TotalMilliseconds;
        }

        return (_keepAliveSeconds > 0 && now - Volatile.Read(ref _lastActivity) > _keepAliveSeconds * 1500L)
            || Volatile.Read(ref _inflight) is { Count: > 0 };
    }

    /// <summary>Connect timeout, keep-alive at 1.5x (§3.1.2.10) and QoS 1 downlink re-sends; called by the ticker.</summary>
    internal void OnTimer(long now)
    {
        if (_device is null)
        {
            MqttLog.ConnectTimeout(_door.Logger, ConnectionId, _door.Options.ConnectTimeout);
            _door.Guard?.Report(Door, "connections closed: no CONNECT in time", ConnectionId);
            Abort("connect timeout");
            return;
        }

        if (_keepAliveSeconds > 0 && now - Volatile.Read(ref _lastActivity) > _keepAliveSeconds * 1500L)
        {
            MqttLog.KeepAliveExpired(_door.Logger, ConnectionId, _deviceName, _keepAliveSeconds);
            _door.Guard?.Report(Door, "connections closed: keep-alive expired", $"{ConnectionId} device {_deviceName}");
            Abort("keep-alive expired");
            return;
        }

        ResendExpired(now);
    }

    private void ResendExpired(long now)
    {
        long retryMs = (long)_door.Options.DownlinkRetryInterval.TotalMilliseconds;
        bool wrote = false;
        lock (_writeLock)
        {
            if (_outputClosed || _inflight is not { Count: > 0 } inflights)
            {
                return;
            }

            foreach (var (id, inflight) in inflights)
            {
                if (now - inflight.SentAt >= retryMs)
                {
                    inflight.Frame[0] |= 0x08; // DUP (§3.3.1.1)
                    _output.Write(inflight.Frame.AsSpan(0, inflight.Length));
                    inflights[id] = inflight with { SentAt = now };
                    wrote = true;
                }
            }
        }

        if (wrote)
        {
            RequestFlush();
        }
    }

    private void OnViolation(MqttProtocolError error)
    {
        MqttLog.ProtocolViolation(_door.Logger, ConnectionId, _deviceName, error);
        _door.Guard?.Report(Door, "connections closed: protocol violation", $"{ConnectionId}: {error}");
        var code = error switch
        {
            MqttProtocolError.UnacceptableProtocolVersion => MqttConnectReturnCode.UnacceptableProtocolVersion,
            MqttProtocolError.IdentifierRejected => MqttConnectReturnCode.IdentifierRejected,
            _ => MqttConnectReturnCode.Accepted,
        };

        // §3.2.2.3: a refused CONNECT is answered before the close; other violations just close.
        if (code != MqttConnectReturnCode.Accepted && _device is null)
        {
            MqttLog.ConnectRefused(_door.Logger, ConnectionId, code);
            lock (_writeLock)
            {
                MqttPacketWriter.WriteConnAck(_output, code);
            }
        }

        _closing = true;
    }

    private void Abort(string reason)
    {
        _closeReason ??= reason;
        _closing = true;
        _connection.Transport.Input.CancelPendingRead();
    }

    private CancellationToken ClosedToken()
    {
        lock (_writeLock)
        {
            if (_outputClosed)
            {
                return new CancellationToken(canceled: true);
            }

            return (_closed ??= new CancellationTokenSource()).Token;
        }
    }

    private async Task ShutdownAsync()
    {
        _closing = true;
        _door.Ticker.Remove(this);
        if (_registered)
        {
            _door.Sessions.Unregister(this);
        }

        if (_children is not null)
        {
            foreach (var child in _children.Values)
            {
                _door.Sessions.Unregister(child);
            }
        }

        // After this no write and no new flush starts (every writer and the flusher check _outputClosed
        // under the lock). A flush already under way may still be awaiting the socket: it is not awaited
        // here; completing the writer commits whatever is unflushed, and the transport sends it before
        // closing the socket.
        lock (_writeLock)
        {
            _outputClosed = true;
            if (_inflight is { } inflights)
            {
                foreach (var inflight in inflights.Values)
                {
                    ArrayPool<byte>.Shared.Return(inflight.Frame);
                }

                inflights.Clear();
            }
        }

        if (_closed is { } closed)
        {
            await closed.CancelAsync();
            closed.Dispose();
        }

        await _output.CompleteAsync();
        await _connection.Transport.Input.CompleteAsync();
        // The JSON writer is not disposed: it holds no unmanaged resource (its output is our ArrayBufferWriter),
        // and a push from another thread that passed its _closing check just before the close still resets and
        // uses it under the write lock (WritePublishLocked then drops the frame). Disposing it here made that
        // push throw ObjectDisposedException (found by LeanSocketWriterTests' output-cap test).
    }

    /// <summary>A topic as one span: the pipe segment itself, or a per-connection scratch copy when it spans segments.</summary>
    private ReadOnlySpan<byte> TopicSpan(in ReadOnlySequence<byte> topic)
    {
        if (topic.IsSingleSegment)
        {
            return topic.FirstSpan;
        }

        int len = (int)topic.Length;
        if (_topicScratch is null || _topicScratch.Length < len)
        {
            _topicScratch = new byte[Math.Max(len, 256)];
        }

        topic.CopyTo(_topicScratch);
        return _topicScratch.AsSpan(0, len);
    }

    private readonly record struct PendingUplink(ValueTask<UplinkResult> Task, ushort PacketId, byte QoS, TopicRoute Route);

    /// <summary>An unacknowledged QoS 1 downlink: <see cref="Frame"/> is pooled, its first <see cref="Length"/> bytes the packet.</summary>
    /// <param name="RpcRequestId">Non-zero for a server-side RPC request: its PUBACK is reported to the core.</param>
    private readonly record struct Inflight(byte[] Frame, int Length, long SentAt, int RpcRequestId = 0);
}
