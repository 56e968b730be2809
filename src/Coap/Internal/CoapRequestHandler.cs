using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Coap.Internal;

/// <summary>What a resource answers: code, payload and the options that go with it.</summary>
internal readonly record struct CoapReply(byte Code, ReadOnlyMemory<byte> Payload = default, ushort? ContentFormat = null, uint? Observe = null, CoapBlock? Block2 = null, int? Size1 = null, int? Size2 = null);

/// <summary>
/// The CoAP door's protocol engine: parses each datagram, de-duplicates, routes <c>/api/v1/{token}/...</c>
/// to the core, and owns the confirmable-message machinery (empty ACK after 500 ms, separate
/// responses, notifications with retransmission). <see cref="OnDatagram"/> runs on the receive loop
/// only; completions and pushes arrive from any thread.
/// </summary>
internal sealed class CoapRequestHandler
{
    private static ReadOnlySpan<byte> QueryClientKeys => "clientKeys"u8;
    private static ReadOnlySpan<byte> QuerySharedKeys => "sharedKeys"u8;
    private static readonly IPEndPoint AnyEndPoint = new(IPAddress.Any, 0);

    private readonly Socket _socket;
    private readonly IDeviceApi _api;
    private readonly ISessionTable _sessions;
    private readonly CoapOptions _options;
    private readonly ILogger _logger;
    private readonly CoapDeduplicator _dedup;
    private readonly byte[] _cached = new byte[CoapDeduplicator.MaxCachedResponse];
    private readonly ConcurrentBag<CoapExchange> _pool = [];
    private readonly Lock _lock = new();
    private readonly Dictionary<ushort, CoapExchange> _outstandingById = [];
    private readonly Dictionary<(CoapEndpointKey, uint), Block1Upload> _uploads = [];
    private readonly ConcurrentDictionary<Guid, CoapDeviceSession> _deviceSessions = new();
    private readonly Lock _sessionLock = new();
    private CoapExchangeList _pending;
    private CoapExchangeList _outstanding;
    private int _nextMessageId = Random.Shared.Next(ushort.MaxValue);
    private long _malformed;
    private int _pooled;

    private const string Door = "coap";

    private readonly ConnectionGuard? _guard;
    private readonly DeviceRateLimits _limits;

    public CoapRequestHandler(Socket socket, IDeviceApi api, ISessionTable sessions, CoapOptions options, ILogger logger,
        ConnectionGuard? guard = null, DeviceRateLimits? limits = null)
    {
        _guard = guard;
        _limits = limits ?? DeviceRateLimits.None;
        _socket = socket;
        _api = api;
        _sessions = sessions;
        _options = options;
        _logger = logger;
        _dedup = new CoapDeduplicator(options.DeduplicationCapacity, CoapTransmission.ExchangeLifetime);
    }

    public long MalformedCount => Interlocked.Read(ref _malformed);

    public int OutstandingCount
    {
        get
        {
            lock (_lock)
            {
                return _outstanding.Count;
            }
        }
    }

    private static long NowMs => Environment.TickCount64;

    private ushort NextMessageId() => (ushort)Interlocked.Increment(ref _nextMessageId);

    /// <summary>One received datagram; <paramref name="buffer"/> is reused for the next receive once this returns.</summary>
    public void OnDatagram(byte[] buffer, int length, SocketAddress remote)
    {
        CoapMetrics.Received(length);
        var datagram = buffer.AsSpan(0, length);
        CoapMessageReader message;
        try
        {
            message = new CoapMessageReader(datagram);
        }
        catch (CoapFormatException ex)
        {
            Interlocked.Increment(ref _malformed);
            CoapLog.Malformed(_logger, ex.Reason);
            _guard?.Report(Door, "datagrams ignored as malformed", $"from {AnyEndPoint.Create(remote)}: {ex.Reason}");
            // §4.2: a CON with a format error is rejected with RST; anything else is silently ignored.
            if (CoapMessageReader.TryReadHeader(datagram, out var type, out var id) && type == CoapMessageType.Confirmable)
            {
                SendEmpty(CoapMessageType.Reset, id, remote);
            }

            return;
        }

        var endpoint = CoapEndpointKey.From(remote);
        if (message.IsEmpty)
        {
            switch (message.Type)
            {
                case CoapMessageType.Confirmable:
                    SendEmpty(CoapMessageType.Reset, message.MessageId, remote); // §4.3 ping
                    break;
                case CoapMessageType.Acknowledgement:
                case CoapMessageType.Reset:
                    OnAcknowledged(endpoint, message.MessageId, message.Type == CoapMessageType.Reset);
                    break;
            }

            return;
        }

        if (!CoapCode.IsRequest(message.Code))
        {
            // A response or reserved code: we send no requests, so an unexpected CON is rejected (§4.2).
            if (message.Type == CoapMessageType.Confirmable)
            {
                SendEmpty(CoapMessageType.Reset, message.MessageId, remote);
            }
            else if (message.Type is CoapMessageType.Acknowledgement or CoapMessageType.Reset)
            {
                OnAcknowledged(endpoint, message.MessageId, message.Type == CoapMessageType.Reset);
            }

            return;
        }

        if (message.Type is CoapMessageType.Acknowledgement or CoapMessageType.Reset)
        {
            return; // §4.2: a request cannot be carried in ACK or RST.
        }

        var slot = _dedup.Check(endpoint, message.MessageId, NowMs, _cached, out var cachedLength, safeToRepeat: message.Code == CoapCode.Get);
        if (slot < 0)
        {
            // §4.5: a duplicate gets the same answer (or none while the first copy is still being processed).
            if (cachedLength > 0)
            {
                Send(_cached.AsSpan(0, cachedLength), remote);
            }

            return;
        }

        var exchange = Rent();
        SocketAddressCopy.Copy(remote, exchange.Remote);
        exchange.Endpoint = endpoint;
        exchange.RequestType = message.Type;
        exchange.RequestMessageId = message.MessageId;
        exchange.DedupSlot = slot;
        exchange.StartedMs = NowMs;
        message.Token.CopyTo(exchange.TokenBuffer);
        exchange.TokenLength = message.Token.Length;
        try
        {
            Dispatch(exchange, message, buffer, length - message.Payload.Length, message.Payload.Length);
        }
        catch (Exception ex)
        {
            // Every path completes its exchange before anything that can throw; log and keep serving.
            CoapLog.RequestFailed(_logger, ex);
        }
    }

    private void Dispatch(CoapExchange exchange, in CoapMessageReader message, byte[] buffer, int payloadOffset, int payloadLength)
    {
        var request = CoapRequest.Read(message);
        if (payloadOffset + payloadLength > _options.MaxDatagramSize)
        {
            // RFC 7959 §2.9.3: too large for one datagram; the Block1 option names the block size to use instead.
            exchange.Block1Echo = new CoapBlock(0, false, CoapBlock.ExponentFor(_options.BlockSize));
            Complete(exchange, new CoapReply(CoapCode.RequestEntityTooLarge, Size1: _options.MaxBodySize));
            return;
        }

        if (request.HasReservedBlockSize)
        {
            Complete(exchange, new CoapReply(CoapCode.BadRequest)); // RFC 7959 §2.2: SZX 7 is reserved
            return;
        }

        if (request.HasUnknownCritical || request.HasBadBlock)
        {
            Complete(exchange, new CoapReply(CoapCode.BadOption)); // §5.4.1
            return;
        }

        if (request.Resource == CoapResource.Unknown)
        {
            Complete(exchange, new CoapReply(CoapCode.NotFound));
            return;
        }

        if (request.ContentFormat is { } format && format is not (CoapContentFormat.Json or CoapContentFormat.TextPlain))
        {
            Complete(exchange, new CoapReply(CoapCode.UnsupportedContentFormat));
            return;
        }

        // Blocked for wrong credentials: 4.03 without looking at the token. The address is only built
        // (allocated) while some address is blocked, or on a wrong token.
        if (_guard is { AnyBlocked: true } && _guard.IsBlocked(Door, ((IPEndPoint)AnyEndPoint.Create(exchange.Remote)).Address))
        {
            Complete(exchange, new CoapReply(CoapCode.Forbidden));
            return;
        }

        var device = _api.Authenticate(request.AccessToken);
        if (device is null)
        {
            _guard?.AuthFailed(Door, ((IPEndPoint)AnyEndPoint.Create(exchange.Remote)).Address, "unknown access token");
            Complete(exchange, new CoapReply(CoapCode.Unauthorized));
            return;
        }

        exchange.Block2Request = request.Block2;
        var method = message.Code;
        switch (request.Resource, method)
        {
            case (CoapResource.Telemetry, CoapCode.Post):
            case (CoapResource.Attributes, CoapCode.Post):
            case (CoapResource.RpcReply, CoapCode.Post):
            case (CoapResource.Claim, CoapCode.Post):
            case (CoapResource.Rpc, CoapCode.Post):
                Upload(exchange, request, device, buffer, payloadOffset, payloadLength);
                return;
            case (CoapResource.Telemetry, CoapCode.Get):
                Complete(exchange, new CoapReply(CoapCode.BadRequest));
                return;
            case (CoapResource.Attributes, CoapCode.Get):
                GetAttributes(exchange, request, device);
                return;
            case (CoapResource.Rpc, CoapCode.Get):
                ObserveRpc(exchange, request, device);
                return;
            case (CoapResource.Firmware, CoapCode.Get):
                _ = FirmwareAsync(exchange, device, request.Query("title"u8), request.Query("version"u8),
                    ParseInt(request.Query("size"u8)), ParseInt(request.Query("chunk"u8)), request.Block2);
                return;
            default:
                Complete(exchange, new CoapReply(CoapCode.MethodNotAllowed));
                return;
        }
    }

    private static int? ParseInt(string? text) => int.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var value) ? value : null;

    // ---- uploads (the hot path) ----

    private void Upload(CoapExchange exchange, in CoapRequest request, Device device, byte[] buffer, int offset, int length)
    {
        byte[]? assembled = null;
        var body = new ReadOnlySequence<byte>(buffer, offset, length);
        if (request.Block1 is { } block)
        {
            if (!AcceptBlock(exchange, request, block, buffer.AsSpan(offset, length), out assembled, out var assembledLength))
            {
                return;
            }

            body = new ReadOnlySequence<byte>(assembled!, 0, assembledLength);
        }

        try
        {
            // The same per-device and per-tenant budgets as MQTT and HTTP: one token per uplink.
            if (_limits.TryAcquire(device) is not null)
            {
                Complete(exchange, new CoapReply(CoapCode.TooManyRequests));
                return;
            }

            if (request.Resource == CoapResource.Rpc)
            {
                _ = ClientRpcAsync(exchange, device, _api.ClientRpcAsync(device, body, CancellationToken.None));
                return;
            }

            exchange.SuccessCode = CoapCode.Created;
            var uplink = request.Resource switch
            {
                CoapResource.Telemetry => _api.PostTelemetryAsync(device, body),
                CoapResource.Attributes => _api.PostAttributesAsync(device, body),
                CoapResource.RpcReply => _api.RpcReplyAsync(device, request.RpcId, body),
                _ => _api.ClaimAsync(device, body),
            };
            if (uplink.IsCompleted)
            {
                UplinkResult result;
                try
                {
                    result = uplink.GetAwaiter().GetResult();
                }
                catch (Exception)
                {
                    result = new UplinkResult(UplinkStatus.Unavailable);
                }

                CompleteUplink(exchange, result);
                return;
            }

            Track(exchange);
            exchange.Await(uplink);
        }
        finally
        {
            // IDeviceApi parses before its first await: the assembled body can go back to the pool now.
            if (assembled is not null)
            {
                ArrayPool<byte>.Shared.Return(assembled);
            }
        }
    }

    public void CompleteUplink(CoapExchange exchange, UplinkResult result) =>
        Complete(exchange, new CoapReply(result.Status switch
        {
            UplinkStatus.Ok => exchange.SuccessCode,
            UplinkStatus.Unauthorized => CoapCode.Unauthorized,
            UplinkStatus.BadPayload => CoapCode.BadRequest,
            UplinkStatus.TooLarge => CoapCode.RequestEntityTooLarge,
            UplinkStatus.RateLimited => CoapCode.TooManyRequests,
            UplinkStatus.NotFound => CoapCode.NotFound,
            UplinkStatus.Timeout => CoapCode.GatewayTimeout,
            _ => CoapCode.InternalServerError,
        }));

    /// <summary>
    /// RFC 7959 §2.5 Block1: blocks arrive in order and are appended to a pooled buffer keyed by
    /// endpoint and URI; each non-final block is answered 2.31 Continue. True with the whole body on the last block.
    /// </summary>
    private bool AcceptBlock(CoapExchange exchange, in CoapRequest request, CoapBlock block, ReadOnlySpan<byte> payload, out byte[]? body, out int bodyLength)
    {
        body = null;
        bodyLength = 0;
        var key = (exchange.Endpoint, request.PathHash);
        var now = NowMs;
        ExpireUploads(now);
        if (block.Number == 0)
        {
            if (_uploads.Remove(key, out var stale))
            {
                ArrayPool<byte>.Shared.Return(stale.Buffer);
            }

            if (request.Size1 > _options.MaxBodySize)
            {
                Complete(exchange, new CoapReply(CoapCode.RequestEntityTooLarge, Size1: _options.MaxBodySize));
                return false;
            }

            if (_uploads.Count >= _options.MaxConcurrentUploads)
            {
                Complete(exchange, new CoapReply(CoapCode.ServiceUnavailable)); // bounded memory under a flood of uploads
                return false;
            }

            _uploads[key] = new Block1Upload { Buffer = ArrayPool<byte>.Shared.Rent(Math.Max(block.Size * 4, 1024)) };
        }

        if (!_uploads.TryGetValue(key, out var upload) || upload.Length != block.Offset)
        {
            Complete(exchange, new CoapReply(CoapCode.RequestEntityIncomplete)); // §2.9.2
            return false;
        }

        if (upload.Length + payload.Length > _options.MaxBodySize || (block.More && payload.Length != block.Size))
        {
            _uploads.Remove(key);
            ArrayPool<byte>.Shared.Return(upload.Buffer);
            Complete(exchange, block.More && payload.Length != block.Size
                ? new CoapReply(CoapCode.BadRequest)
                : new CoapReply(CoapCode.RequestEntityTooLarge, Size1: _options.MaxBodySize));
            return false;
        }

        if (upload.Buffer.Length < upload.Length + payload.Length)
        {
            var grown = ArrayPool<byte>.Shared.Rent(Math.Max(upload.Buffer.Length * 2, upload.Length + payload.Length));
            upload.Buffer.AsSpan(0, upload.Length).CopyTo(grown);
            ArrayPool<byte>.Shared.Return(upload.Buffer);
            upload.Buffer = grown;
        }

        payload.CopyTo(upload.Buffer.AsSpan(upload.Length));
        upload.Length += payload.Length;
        upload.TouchedMs = now;
        if (block.More)
        {
            exchange.Block1Echo = block;
            Complete(exchange, new CoapReply(CoapCode.Continue));
            return false;
        }

        _uploads.Remove(key);
        exchange.Block1Echo = block;
        body = upload.Buffer;
        bodyLength = upload.Length;
        return true;
    }

    private void ExpireUploads(long now)
    {
        if (_uploads.Count == 0)
        {
            return;
        }

        foreach (var (key, upload) in _uploads)
        {
            if (now - upload.TouchedMs > (long)CoapTransmission.ExchangeLifetime.TotalMilliseconds / 4)
            {
                _uploads.Remove(key);
                ArrayPool<byte>.Shared.Return(upload.Buffer);
            }
        }
    }

    private async Task ClientRpcAsync(CoapExchange exchange, Device device, ValueTask<ClientRpcResult> call)
    {
        if (!call.IsCompleted)
        {
            Track(exchange);
        }

        try
        {
            var result = await call;
            Complete(exchange, result.Result.IsOk
                ? new CoapReply(CoapCode.Content, System.Text.Encoding.UTF8.GetBytes(result.ResponseJson ?? "{}"), CoapContentFormat.Json)
                : new CoapReply(result.Result.Status switch
                {
                    UplinkStatus.BadPayload => CoapCode.BadRequest,
                    UplinkStatus.TooLarge => CoapCode.RequestEntityTooLarge,
                    UplinkStatus.Timeout => CoapCode.GatewayTimeout,
                    _ => CoapCode.InternalServerError,
                }));
        }
        catch (Exception ex)
        {
            CoapLog.RequestFailed(_logger, ex);
            Complete(exchange, new CoapReply(CoapCode.InternalServerError));
        }
    }

    // ---- attributes, RPC observation, firmware ----

    private void GetAttributes(CoapExchange exchange, in CoapRequest request, Device device)
    {
        if (request.Observe == 0)
        {
            _ = ObserveAttributesAsync(exchange, device, _api.RequestAttributesAsync(device, null, null, onlyShared: true));
            return;
        }

        if (request.Observe == 1)
        {
            CancelObserver(device, CoapObserveKind.Attributes, exchange.Endpoint);
        }
        else if (TryCompleteFromObservation(exchange, request, device, CoapObserveKind.Attributes))
        {
            return;
        }

        var reply = _api.RequestAttributesAsync(device, Keys(request.Query(QueryClientKeys)), Keys(request.Query(QuerySharedKeys)));
        _ = AttributesAsync(exchange, reply);
    }

    private async Task AttributesAsync(CoapExchange exchange, ValueTask<AttributesReply> pending)
    {
        if (!pending.IsCompleted)
        {
            Track(exchange);
        }

        try
        {
            var reply = await pending;
            Complete(exchange, new CoapReply(CoapCode.Content, DeviceJson.AttributesReply(reply), CoapContentFormat.Json));
        }
        catch (Exception ex)
        {
            CoapLog.RequestFailed(_logger, ex);
            Complete(exchange, new CoapReply(CoapCode.InternalServerError));
        }
    }

    /// <summary>RFC 7641 §3.1: the registration is answered with the current state (the shared attributes) and an Observe sequence.</summary>
    private async Task ObserveAttributesAsync(CoapExchange exchange, Device device, ValueTask<AttributesReply> pending)
    {
        if (!pending.IsCompleted)
        {
            Track(exchange);
        }

        try
        {
            var current = await pending;
            var observer = AddObserver(device, CoapObserveKind.Attributes, exchange);
            var representation = DeviceJson.SharedAttributes(current);
            observer.LastLargeRepresentation = representation.Length > BlockSize ? representation : null;
            Complete(exchange, new CoapReply(CoapCode.Content, representation, CoapContentFormat.Json, observer.NextSequence()));
            SubscriptionsChanged(observer.Session);
        }
        catch (Exception ex)
        {
            CoapLog.RequestFailed(_logger, ex);
            Complete(exchange, new CoapReply(CoapCode.InternalServerError));
        }
    }

    private static string[]? Keys(string? csv) =>
        string.IsNullOrWhiteSpace(csv) ? null : csv.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private void ObserveRpc(CoapExchange exchange, in CoapRequest request, Device device)
    {
        switch (request.Observe)
        {
            case 0:
                var observer = AddObserver(device, CoapObserveKind.Rpc, exchange);
                // Answer the registration first so queued requests arrive as notifications after it.
                Complete(exchange, new CoapReply(CoapCode.Content, Observe: observer.NextSequence()));
                SubscriptionsChanged(observer.Session);
                return;
            case 1:
                CancelObserver(device, CoapObserveKind.Rpc, exchange.Endpoint);
                Complete(exchange, new CoapReply(CoapCode.Content));
                return;
            case null when TryCompleteFromObservation(exchange, request, device, CoapObserveKind.Rpc):
                return;
            default:
                Complete(exchange, new CoapReply(CoapCode.BadRequest));
                return;
        }
    }

    /// <summary>
    /// Firmware: with <c>size</c> and <c>chunk</c> one chunk is returned (block-wise if large); without
    /// them the whole package is served block by block, Block2 NUM/SZX mapping to chunk index/size.
    /// </summary>
    private async Task FirmwareAsync(CoapExchange exchange, Device device, string? title, string? version, int? size, int? chunk, CoapBlock? block2)
    {
        try
        {
            Track(exchange);
            if (size is > 0 && chunk is >= 0)
            {
                var one = await _api.GetFirmwareChunkAsync(device, title, version, size.Value, chunk.Value);
                Complete(exchange, one.Result.IsOk
                    ? new CoapReply(CoapCode.Content, one.Data, CoapContentFormat.OctetStream)
                    : new CoapReply(FirmwareError(one.Result.Status)));
                return;
            }

            var block = block2 ?? new CoapBlock(0, false, CoapBlock.ExponentFor(_options.BlockSize));
            block = block with { SizeExponent = Math.Min(block.SizeExponent, CoapBlock.ExponentFor(_options.BlockSize)) };
            var data = await _api.GetFirmwareChunkAsync(device, title, version, block.Size, block.Number);
            if (!data.Result.IsOk)
            {
                Complete(exchange, new CoapReply(FirmwareError(data.Result.Status)));
                return;
            }

            var more = false;
            if (data.Data.Length == block.Size)
            {
                var next = await _api.GetFirmwareChunkAsync(device, title, version, 1, block.Offset + block.Size);
                more = next.Result.IsOk && next.Data.Length > 0;
            }

            Complete(exchange, new CoapReply(CoapCode.Content, data.Data, CoapContentFormat.OctetStream, Block2: block with { More = more }));
        }
        catch (Exception ex)
        {
            CoapLog.RequestFailed(_logger, ex);
            Complete(exchange, new CoapReply(CoapCode.InternalServerError));
        }
    }

    private static byte FirmwareError(UplinkStatus status) => status switch
    {
        UplinkStatus.NotFound => CoapCode.NotFound,
        UplinkStatus.BadPayload => CoapCode.BadRequest,
        _ => CoapCode.InternalServerError,
    };

    /// <summary>
    /// Registers the device's session (before the registration response goes out, so the core can push as
    /// soon as the client knows it is observing) and adds the observer. The session is registered before
    /// the observer exists, so registering cannot deliver a queued RPC ahead of the registration response;
    /// <see cref="SubscriptionsChanged"/> after the response does.
    /// </summary>
    private CoapObserver AddObserver(Device device, CoapObserveKind kind, CoapExchange exchange)
    {
        lock (_sessionLock)
        {
            var session = _deviceSessions.GetOrAdd(device.Id, id => new CoapDeviceSession(this, id, "coap:" + AnyEndPoint.Create(exchange.Remote)));
            if (!session.Registered)
            {
                session.Registered = true;
                _sessions.Register(session);
            }

            return session.Observe(kind, exchange.Remote, exchange.Endpoint, exchange.Token);
        }
    }

    private void SubscriptionsChanged(CoapDeviceSession session) => _sessions.SubscriptionsChanged(session);

    private void CancelObserver(Device device, CoapObserveKind kind, CoapEndpointKey endpoint)
    {
        if (_deviceSessions.TryGetValue(device.Id, out var session) && session.Cancel(kind, endpoint))
        {
            ReleaseIfEmpty(session);
        }
    }

    private void RemoveObserver(CoapObserver observer)
    {
        if (observer.Session.Remove(observer))
        {
            CoapLog.ObserverRemoved(_logger, observer.Session.DeviceId, observer.Kind);
            ReleaseIfEmpty(observer.Session);
        }
    }

    private void ReleaseIfEmpty(CoapDeviceSession session)
    {
        lock (_sessionLock)
        {
            if (!session.IsEmpty)
            {
                return;
            }

            _deviceSessions.TryRemove(new KeyValuePair<Guid, CoapDeviceSession>(session.DeviceId, session));
            if (session.Registered)
            {
                session.Registered = false;
                _sessions.Unregister(session);
            }
        }
    }

    public void SessionClosed(CoapDeviceSession session)
    {
        lock (_sessionLock)
        {
            _deviceSessions.TryRemove(new KeyValuePair<Guid, CoapDeviceSession>(session.DeviceId, session));
            session.Registered = false;
        }
    }

    /// <summary>The block size responses are cut at: the configured one, as a power of two from 16 to 1024.</summary>
    private int BlockSize => 1 << (CoapBlock.ExponentFor(_options.BlockSize) + 4);

    /// <summary>
    /// RFC 7959 §3.4: a GET with Block2 and no Observe from an endpoint whose observation's last notification did not
    /// fit one block asks for that notification's further blocks: they are answered from the same representation
    /// (a fresh one could differ and would corrupt what the client stitches together).
    /// </summary>
    private bool TryCompleteFromObservation(CoapExchange exchange, in CoapRequest request, Device device, CoapObserveKind kind)
    {
        if (request.Observe is not null || request.Block2 is not { Number: > 0 } || request.HasQuery
            || !_deviceSessions.TryGetValue(device.Id, out var session)
            || session.Find(kind, exchange.Endpoint)?.LastLargeRepresentation is not { } representation)
        {
            return false;
        }

        Complete(exchange, new CoapReply(CoapCode.Content, representation, CoapContentFormat.Json));
        return true;
    }

    /// <summary>
    /// RFC 7959 §2.4: block <paramref name="block"/> of a representation, with its Block2 option (More when bytes
    /// follow) and, on block 0, the representation's Size2.
    /// </summary>
    private static ReadOnlySpan<byte> SliceBlock(ReadOnlySpan<byte> representation, CoapBlock block, out CoapBlock block2, out int? size2)
    {
        var offset = Math.Min(block.Offset, representation.Length);
        var end = Math.Min(offset + block.Size, representation.Length);
        block2 = block with { More = end < representation.Length };
        size2 = block.Number == 0 ? representation.Length : null;
        return representation[offset..end];
    }

    /// <summary>Sends a confirmable 2.05 notification (RFC 7641 §4.2) and retransmits it until acknowledged.</summary>
    public void Notify(CoapObserver observer, ReadOnlyMemory<byte> json)
    {
        var exchange = Rent();
        SocketAddressCopy.Copy(observer.Remote, exchange.Remote);
        exchange.Endpoint = observer.Endpoint;
        observer.Token.CopyTo(exchange.TokenBuffer, 0);
        exchange.TokenLength = observer.Token.Length;
        exchange.Observer = observer;
        exchange.State = CoapExchange.StateDone;
        var payload = json.Span;
        CoapBlock? block2 = null;
        int? size2 = null;
        if (payload.Length > BlockSize)
        {
            // RFC 7959 §3.4: the notification carries the first block; the client GETs the rest (answered from
            // the observer's copy, see TryCompleteFromObservation), so a datagram never exceeds one block.
            observer.LastLargeRepresentation = json;
            payload = SliceBlock(payload, new CoapBlock(0, false, CoapBlock.ExponentFor(BlockSize)), out var first, out size2);
            block2 = first;
        }
        else
        {
            observer.LastLargeRepresentation = null;
        }

        var response = new CoapResponse
        {
            Type = CoapMessageType.Confirmable,
            Code = CoapCode.Content,
            MessageId = NextMessageId(),
            Token = exchange.Token,
            Observe = observer.NextSequence(),
            ContentFormat = CoapContentFormat.Json,
            Block2 = block2,
            Size2 = size2,
            Payload = payload,
        };
        var buffer = exchange.EnsureBuffer(response.GetSize());
        exchange.Length = response.WriteTo(buffer);
        exchange.OutMessageId = response.MessageId;
        StartRetransmission(exchange);
        Send(buffer.AsSpan(0, exchange.Length), exchange.Remote);
    }

    // ---- completion: piggybacked, NON, or separate (RFC 7252 §5.2) ----

    private void Track(CoapExchange exchange)
    {
        if (exchange.RequestType != CoapMessageType.Confirmable || exchange.Listed)
        {
            return;
        }

        lock (_lock)
        {
            _pending.Add(exchange);
        }
    }

    /// <summary>Answers a request: piggybacked on the ACK while the 500 ms window is open, else as a separate CON.</summary>
    public void Complete(CoapExchange exchange, in CoapReply reply)
    {
        if (exchange.Listed)
        {
            lock (_lock)
            {
                _pending.Remove(exchange);
            }
        }

        var payload = reply.Payload.Span;
        var block2 = reply.Block2;
        var size2 = reply.Size2;
        var blockSize = BlockSize;
        if (block2 is null && (payload.Length > blockSize || exchange.Block2Request is not null) && reply.Code == CoapCode.Content)
        {
            // RFC 7959 §2.4: slice the representation; the client asks for the following blocks by NUM.
            var requested = exchange.Block2Request ?? new CoapBlock(0, false, CoapBlock.ExponentFor(blockSize));
            var block = requested with { SizeExponent = Math.Min(requested.SizeExponent, CoapBlock.ExponentFor(blockSize)) };
            payload = SliceBlock(payload, block, out var sliced, out size2);
            block2 = sliced;
        }

        var response = new CoapResponse
        {
            Code = reply.Code,
            Token = exchange.Token,
            Observe = reply.Observe,
            ContentFormat = payload.IsEmpty ? null : reply.ContentFormat,
            Block2 = block2,
            Block1 = exchange.Block1Echo,
            Size2 = size2,
            Size1 = reply.Size1,
            Payload = payload,
        };

        var previous = Interlocked.CompareExchange(ref exchange.State, CoapExchange.StateDone, CoapExchange.StatePending);
        if (previous == CoapExchange.StatePending)
        {
            var confirmable = exchange.RequestType == CoapMessageType.Confirmable;
            response.Type = confirmable ? CoapMessageType.Acknowledgement : CoapMessageType.NonConfirmable;
            response.MessageId = confirmable ? exchange.RequestMessageId : NextMessageId();
            var buffer = exchange.EnsureBuffer(response.GetSize());
            var length = response.WriteTo(buffer);
            Send(buffer.AsSpan(0, length), exchange.Remote);
            _dedup.Complete(exchange.DedupSlot, exchange.Endpoint, exchange.RequestMessageId, buffer.AsSpan(0, length));
            Return(exchange);
            return;
        }

        // §5.2.2: the empty ACK went out already; the response travels as its own CON.
        response.Type = CoapMessageType.Confirmable;
        response.MessageId = NextMessageId();
        var separate = exchange.EnsureBuffer(response.GetSize());
        exchange.Length = response.WriteTo(separate);
        exchange.OutMessageId = response.MessageId;
        StartRetransmission(exchange);
        Send(separate.AsSpan(0, exchange.Length), exchange.Remote);
    }

    private void StartRetransmission(CoapExchange exchange)
    {
        // §4.2: the first timeout is random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR].
        var ackTimeout = CoapTransmission.AckTimeout.TotalMilliseconds * _options.AckTimeoutScale;
        exchange.TimeoutMs = (long)(ackTimeout * (1 + (Random.Shared.NextDouble() * (CoapTransmission.AckRandomFactor - 1))));
        exchange.NextAttemptMs = NowMs + exchange.TimeoutMs;
        exchange.Attempts = 0;
        lock (_lock)
        {
            if (_outstandingById.Remove(exchange.OutMessageId, out var clash))
            {
                _outstanding.Remove(clash);
            }

            _outstandingById[exchange.OutMessageId] = exchange;
            _outstanding.Add(exchange);
        }
    }

    private void OnAcknowledged(CoapEndpointKey endpoint, ushort messageId, bool reset)
    {
        CoapExchange? exchange;
        lock (_lock)
        {
            if (!_outstandingById.TryGetValue(messageId, out exchange) || exchange.Endpoint != endpoint)
            {
                return;
            }

            _outstandingById.Remove(messageId);
            _outstanding.Remove(exchange);
        }

        if (reset && exchange.Observer is { } observer)
        {
            RemoveObserver(observer); // RFC 7641 §3.6: RST to a notification cancels the observation.
        }

        Return(exchange);
    }

    /// <summary>Periodic work: empty ACKs for requests older than 500 ms, retransmissions with exponential back-off.</summary>
    public void Tick()
    {
        var now = NowMs;
        var window = (long)CoapTransmission.PiggybackWindow.TotalMilliseconds;
        Span<byte> emptyAck = stackalloc byte[4];
        List<CoapExchange>? expired = null;
        lock (_lock)
        {
            for (var e = _pending.Head; e is not null; e = e.Next)
            {
                if (now - e.StartedMs >= window &&
                    Interlocked.CompareExchange(ref e.State, CoapExchange.StateEmptyAcked, CoapExchange.StatePending) == CoapExchange.StatePending)
                {
                    WriteEmpty(emptyAck, CoapMessageType.Acknowledgement, e.RequestMessageId);
                    Send(emptyAck, e.Remote);
                    _dedup.Complete(e.DedupSlot, e.Endpoint, e.RequestMessageId, emptyAck);
                }
            }

            for (var e = _outstanding.Head; e is not null; e = e.Next)
            {
                if (now < e.NextAttemptMs)
                {
                    continue;
                }

                if (e.Attempts >= CoapTransmission.MaxRetransmit)
                {
                    (expired ??= []).Add(e);
                    continue;
                }

                e.Attempts++;
                e.TimeoutMs *= 2;
                e.NextAttemptMs = now + e.TimeoutMs;
                Send(e.Buffer.AsSpan(0, e.Length), e.Remote);
            }

            if (expired is not null)
            {
                foreach (var e in expired)
                {
                    _outstanding.Remove(e);
                    _outstandingById.Remove(e.OutMessageId);
                }
            }
        }

        if (expired is not null)
        {
            foreach (var e in expired)
            {
                if (e.Observer is { } observer)
                {
                    RemoveObserver(observer); // §4.5 of RFC 7641: an unacknowledged client is gone.
                }

                Return(e);
            }
        }
    }

    // ---- plumbing ----

    private CoapExchange Rent()
    {
        if (_pool.TryTake(out var exchange))
        {
            Interlocked.Decrement(ref _pooled);
            return exchange;
        }

        return new CoapExchange(this, _socket.AddressFamily);
    }

    private void Return(CoapExchange exchange)
    {
        exchange.Reset();
        // A counter, not ConcurrentBag.Count, which takes every per-thread lock.
        if (Interlocked.Increment(ref _pooled) <= _options.ExchangePoolSize)
        {
            _pool.Add(exchange);
        }
        else
        {
            Interlocked.Decrement(ref _pooled);
        }
    }

    private static void WriteEmpty(Span<byte> destination, CoapMessageType type, ushort messageId)
    {
        destination[0] = (byte)(0x40 | ((int)type << 4));
        destination[1] = CoapCode.Empty;
        destination[2] = (byte)(messageId >> 8);
        destination[3] = (byte)messageId;
    }

    private void SendEmpty(CoapMessageType type, ushort messageId, SocketAddress remote)
    {
        Span<byte> message = stackalloc byte[4];
        WriteEmpty(message, type, messageId);
        Send(message, remote);
    }

    private void Send(ReadOnlySpan<byte> datagram, SocketAddress remote)
    {
        try
        {
            _socket.SendTo(datagram, SocketFlags.None, remote);
            CoapMetrics.Sent(datagram.Length);
        }
        catch (SocketException ex)
        {
            CoapLog.SendFailed(_logger, ex.SocketErrorCode);
        }
        catch (ObjectDisposedException)
        {
            // Shutting down.
        }
    }

    private sealed class Block1Upload
    {
        public byte[] Buffer = [];
        public int Length;
        public long TouchedMs;
    }
}
