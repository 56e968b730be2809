using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;
using Perf.Core;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// One TCP connection of an integration: the read loop (frame, decode, publish) and, when the integration
/// has a downlink converter, the write loop (encode, write, newline).
/// </summary>
/// <remarks>
/// Uplinks of one read are published without waiting for each other and awaited together before the next
/// read: a device gets one durability wait per read instead of one per line, and a slow core still
/// pushes back on the socket.
/// </remarks>
internal sealed class TcpConnection
{
    // Downlinks waiting for the writer; beyond this the push is refused (PushRpcRequest returns false).
    private const int DownlinkQueueCapacity = 64;

    private readonly ConnectionContext _connection;
    private readonly TcpIntegration _integration;
    private readonly ITcpUplinkSink _sink;
    private readonly ILogger _logger;
    private readonly TcpFramer _framer;
    private readonly Channel<TcpDownlink> _downlinks;
    private readonly Dictionary<Guid, TcpDeviceSession> _sessions = [];
    private readonly Lock _sessionsLock = new();
    private readonly UplinkBatch _batch = new();
    private readonly TcpUplink _uplink;
    private readonly List<(Task<TcpUplinkResult> Task, string DeviceName, string DeviceType)> _pending = [];
    private long _discardBytes;
    private bool _discardToDelimiter;
    private long _frames;

    private const string Door = "tcp";

    private readonly ConnectionGuard? _guard;

    public TcpConnection(ConnectionContext connection, TcpIntegration integration, ITcpUplinkSink sink, ILogger logger, ConnectionGuard? guard = null)
    {
        _guard = guard;
        _connection = connection;
        _integration = integration;
        _sink = sink;
        _logger = logger;
        _framer = integration.Framer;
        _uplink = new TcpUplink { Integration = integration, ConnectionId = connection.ConnectionId };
        _downlinks = Channel.CreateBounded<TcpDownlink>(new BoundedChannelOptions(DownlinkQueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    public string ConnectionId => _connection.ConnectionId;

    public bool CanDownlink => _integration.DownlinkConverter is not null;

    public async Task RunAsync()
    {
        TcpLog.Connected(_logger, _integration.Name, ConnectionId, _connection.RemoteEndPoint?.ToString());
        ApplySocketOptions();
        TcpMetrics.ConnectionOpened();
        var writer = CanDownlink ? WriteLoopAsync() : Task.CompletedTask;
        var input = _connection.Transport.Input;
        try
        {
            while (true)
            {
                // No ConnectionClosed token here: the socket transport cancels it as soon as it sees the peer's
                // FIN, which can be before this loop has read the bytes that came with it (a device that writes
                // and closes at once, `echo ... | nc`), and a canceled read would drop them. EOF and aborts
                // complete the pipe, so the read still ends.
                var result = await input.ReadAsync();
                var buffer = result.Buffer;
                bool end = result.IsCompleted || result.IsCanceled;
                var consumed = ProcessBuffer(buffer, end);
                input.AdvanceTo(consumed, buffer.End);
                if (_pending.Count > 0)
                {
                    await DrainPendingAsync();
                }

                if (end)
                {
                    break;
                }
            }
        }
        catch (TcpFramingException ex)
        {
            TcpLog.FramingClosed(_logger, ConnectionId, ex.Reason, ex.Message);
            _guard?.Report(Door, "connections closed: framing error", $"{_integration.Name} connection {ConnectionId} from {_connection.RemoteEndPoint}: {ex.Reason}: {ex.Message}");
            _integration.IntegrationEvents.Record(ConverterEventType.Error, $"{ex.Reason}: {ex.Message}; connection closed", ConnectionId);
        }
        catch (OperationCanceledException)
        {
            // The peer or the host closed the connection.
        }
        catch (ConnectionResetException)
        {
            // The peer reset the connection: an ordinary end for a raw TCP device.
        }
        catch (Exception ex)
        {
            TcpLog.ConnectionFailed(_logger, ex, ConnectionId);
        }
        finally
        {
            await CloseAsync(writer);
            TcpMetrics.ConnectionClosed();
        }
    }

    /// <summary>Queues a downlink for the writer; false when the queue is full or the connection is closing.</summary>
    public bool Enqueue(TcpDownlink downlink)
    {
        if (_downlinks.Writer.TryWrite(downlink))
        {
            return true;
        }

        TcpLog.DownlinkDropped(_logger, ConnectionId, downlink.MsgType, downlink.Session.DeviceName);
        _integration.DownlinkEvents.Record(ConverterEventType.Error, "downlink dropped: the connection's queue is full or closing", downlink.MsgJson);
        return false;
    }

    /// <summary>The core closed one device's session (replaced elsewhere, deleted); the connection stays.</summary>
    public void Detach(TcpDeviceSession session, string reason)
    {
        lock (_sessionsLock)
        {
            if (_sessions.TryGetValue(session.DeviceId, out var current) && ReferenceEquals(current, session))
            {
                _sessions.Remove(session.DeviceId);
            }
        }

        TcpLog.SessionClosedByCore(_logger, ConnectionId, session.DeviceName, reason);
    }

    private SequencePosition ProcessBuffer(ReadOnlySequence<byte> buffer, bool end)
    {
        var reader = new SequenceReader<byte>(buffer);
        while (!reader.End)
        {
            if (_discardBytes > 0)
            {
                long skip = Math.Min(_discardBytes, reader.Remaining);
                reader.Advance(skip);
                _discardBytes -= skip;
                continue;
            }

            if (_discardToDelimiter)
            {
                if (!_framer.TrySkipPastDelimiter(ref reader))
                {
                    break;
                }

                _discardToDelimiter = false;
                continue;
            }

            ReadOnlySequence<byte> frame;
            try
            {
                if (!_framer.TryRead(ref reader, out frame))
                {
                    break;
                }
            }
            catch (TcpFramingException ex) when (ex.Resync != FramingResync.Close && _integration.Options.DropOversizedFrames)
            {
                TcpLog.FrameDropped(_logger, ConnectionId, ex.Reason, ex.Message);
                _guard?.Report(Door, "oversized frames dropped", $"{_integration.Name} connection {ConnectionId}: {ex.Reason}: {ex.Message}");
                _integration.IntegrationEvents.Record(ConverterEventType.Error, $"{ex.Reason}: {ex.Message}", ConnectionId);
                _discardBytes = ex.Resync == FramingResync.SkipBytes ? ex.SkipLength : 0;
                _discardToDelimiter = ex.Resync == FramingResync.SkipToDelimiter;
                continue;
            }

            HandleFrame(frame);
        }

        // At EOF a last text line without its separator is still a message (nc without a trailing newline);
        // the reference drops it, which only ever surprises users.
        if (end && !reader.End && !_discardToDelimiter && _discardBytes == 0 &&
            _framer is DelimiterFramer && reader.Remaining <= _framer.MaxFrameLength)
        {
            var rest = reader.UnreadSequence;
            reader.AdvanceToEnd();
            HandleFrame(rest);
        }

        return reader.Position;
    }

    private void HandleFrame(ReadOnlySequence<byte> frame)
    {
        TcpMetrics.FrameReceived(frame.Length);
        if (frame.IsEmpty)
        {
            // Consecutive separators (a blank line) carry no message.
            return;
        }

        _frames++;
        var transcode = _integration.TranscodeFrom;
        if (frame.IsSingleSegment && transcode is null)
        {
            Convert(frame.FirstSpan);
            return;
        }

        // Frames are at most maxFrameLength bytes: small ones are joined on the stack, larger in pooled memory.
        int length = (int)frame.Length;
        byte[]? rented = null;
        Span<byte> joined = length <= 512 ? stackalloc byte[length] : (rented = ArrayPool<byte>.Shared.Rent(length)).AsSpan(0, length);
        byte[]? utf8 = null;
        try
        {
            frame.CopyTo(joined);
            if (transcode is null)
            {
                Convert(joined);
                return;
            }

            int max = Encoding.UTF8.GetMaxByteCount(transcode.GetMaxCharCount(length));
            utf8 = ArrayPool<byte>.Shared.Rent(max);
            int written = Encoding.UTF8.GetBytes(transcode.GetString(joined), utf8);
            Convert(utf8.AsSpan(0, written));
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }

            if (utf8 is not null)
            {
                ArrayPool<byte>.Shared.Return(utf8);
            }
        }
    }

    private void Convert(ReadOnlySpan<byte> payload)
    {
        if (!_integration.Decode(payload, _batch, out var error))
        {
            TcpLog.ConverterFailed(_logger, ConnectionId, error);
            _guard?.Report(Door, "frames rejected by the uplink converter", $"{_integration.Name} connection {ConnectionId}: {error}");
            return;
        }

        for (int i = 0; i < _batch.Count; i++)
        {
            Publish(_batch[i]);
        }
    }

    private void Publish(DecodedUplink message)
    {
        _uplink.DeviceName = message.DeviceName;
        _uplink.DeviceType = message.DeviceType;
        _uplink.Telemetry = message.Telemetry;
        _uplink.Attributes = message.Attributes;
        try
        {
            var pending = _sink.PublishAsync(_uplink);
            if (pending.IsCompletedSuccessfully)
            {
                OnPublished(pending.Result, message.DeviceName, message.DeviceType);
            }
            else
            {
                _pending.Add((pending.AsTask(), message.DeviceName, message.DeviceType));
            }
        }
        catch (Exception ex)
        {
            TcpLog.SinkFailed(_logger, ex, ConnectionId, message.DeviceName);
        }
    }

    private async Task DrainPendingAsync()
    {
        foreach (var (task, name, type) in _pending)
        {
            try
            {
                OnPublished(await task, name, type);
            }
            catch (Exception ex)
            {
                TcpLog.SinkFailed(_logger, ex, ConnectionId, name);
            }
        }

        _pending.Clear();
    }

    private void OnPublished(TcpUplinkResult result, string deviceName, string deviceType)
    {
        if (!result.Result.IsOk)
        {
            TcpLog.UplinkRejected(_logger, ConnectionId, deviceName, result.Result.Status, result.Result.Reason);
            _integration.IntegrationEvents.Record(ConverterEventType.Error, $"uplink of {deviceName} rejected: {result.Result.Status} {result.Result.Reason}", ConnectionId);
            return;
        }

        _integration.IntegrationEvents.CountMessage();
        if (_integration.Options.DebugMode)
        {
            _integration.IntegrationEvents.Record(ConverterEventType.Out, "OK " + deviceName, ConnectionId);
        }

        if (result.DeviceId == Guid.Empty)
        {
            return;
        }

        TcpDeviceSession? opened = null;
        lock (_sessionsLock)
        {
            if (!_sessions.TryGetValue(result.DeviceId, out var session) || session.IsClosed)
            {
                opened = new TcpDeviceSession(this, result.DeviceId, deviceName, deviceType);
                _sessions[result.DeviceId] = opened;
            }
        }

        if (opened is not null)
        {
            TcpLog.SessionOpened(_logger, ConnectionId, deviceName, result.DeviceId);
            if (_integration.Parked.TryRemove(result.DeviceId, out var parked))
            {
                // The device is back: what waited for it goes out on this connection, the old session ends
                // (the host replaces it with the new one below).
                parked.Session.MarkClosed();
                var waiting = parked.Take();
                foreach (var downlink in waiting)
                {
                    Enqueue(downlink with { Session = opened });
                }

                TcpLog.ParkedDelivered(_logger, ConnectionId, waiting.Length, deviceName);
            }

            _sink.OnSessionOpened(opened);
        }
    }

    private async Task WriteLoopAsync()
    {
        // Runs beside the read loop; yields first so the read loop starts without waiting for it.
        await Task.Yield();
        var converter = _integration.DownlinkConverter!;
        var output = _connection.Transport.Output;
        var scratch = new ArrayBufferWriter<byte>(256);
        try
        {
            await foreach (var downlink in _downlinks.Reader.ReadAllAsync())
            {
                var session = downlink.Session;
                if (session.IsClosed)
                {
                    continue;
                }

                var metadata = session.Metadata(downlink);
                if (_integration.Options.DebugMode)
                {
                    _integration.DownlinkEvents.Record(ConverterEventType.In, downlink.MsgJson, downlink.MsgType);
                }

                scratch.ResetWrittenCount();
                if (!converter.TryEncode(downlink.MsgJson, downlink.MsgType, metadata, scratch, out var error))
                {
                    TcpLog.DownlinkFailed(_logger, ConnectionId, downlink.MsgType, session.DeviceName, error ?? "encoder failed");
                    _integration.DownlinkEvents.Record(ConverterEventType.Error, error ?? "encoder failed", downlink.MsgJson);
                    continue;
                }

                _integration.DownlinkEvents.CountMessage();
                if (_integration.Options.DebugMode)
                {
                    _integration.DownlinkEvents.Record(ConverterEventType.Out, Encoding.UTF8.GetString(scratch.WrittenSpan), downlink.MsgType);
                }

                // The reference appends a newline after every downlink payload. Size first, write once.
                int total = scratch.WrittenCount + 1;
                var span = output.GetSpan(total);
                scratch.WrittenSpan.CopyTo(span);
                span[total - 1] = (byte)'\n';
                output.Advance(total);
                var flush = await output.FlushAsync();
                TcpLog.DownlinkSent(_logger, ConnectionId, downlink.MsgType, total, session.DeviceName);
                TcpMetrics.FrameSent(total);
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ConnectionResetException or InvalidOperationException)
        {
            // The connection went away while writing; remaining downlinks are dropped with it.
        }
    }

    private async Task CloseAsync(Task writer)
    {
        // Frames read before a framing error were published: see them through (and open their sessions).
        if (_pending.Count > 0)
        {
            await DrainPendingAsync();
        }

        _downlinks.Writer.TryComplete();
        try
        {
            await writer;
        }
        catch (Exception ex)
        {
            TcpLog.ConnectionFailed(_logger, ex, ConnectionId);
        }

        TcpDeviceSession[] sessions;
        lock (_sessionsLock)
        {
            sessions = [.. _sessions.Values];
            _sessions.Clear();
        }

        var options = _integration.Options;
        bool park = CanDownlink && options.OfflineDownlinkSeconds > 0;
        var unsent = new List<TcpDownlink>();
        while (_downlinks.Reader.TryRead(out var downlink))
        {
            unsent.Add(downlink);
        }

        foreach (var session in sessions)
        {
            if (park && !session.IsClosed)
            {
                Park(session, options, unsent);
            }
            else
            {
                EndSession(session);
            }
        }

        TcpLog.Disconnected(_logger, ConnectionId, _frames);
    }

    // The session stays registered and queues pushes until the device's next connection takes them or
    // the time is up; downlinks this connection had not written yet are queued first.
    private void Park(TcpDeviceSession session, TcpIntegrationOptions options, List<TcpDownlink> unsent)
    {
        var parked = new ParkedDownlinks(session, options.OfflineDownlinkCapacity, _integration.Parked);
        if (_integration.Parked.TryRemove(session.DeviceId, out var older))
        {
            // The device was parked from an earlier connection too: keep its downlinks, oldest first.
            foreach (var downlink in older.Take())
            {
                parked.TryAdd(downlink with { Session = session });
            }

            EndSession(older.Session);
        }

        foreach (var downlink in unsent)
        {
            if (ReferenceEquals(downlink.Session, session))
            {
                parked.TryAdd(downlink);
            }
        }

        session.Park(parked);
        _integration.Parked[session.DeviceId] = parked;
        _ = ExpireAsync(parked, TimeSpan.FromSeconds(options.OfflineDownlinkSeconds));
    }

    private async Task ExpireAsync(ParkedDownlinks parked, TimeSpan after)
    {
        await Task.Delay(after);
        if (_integration.Parked.TryRemove(new KeyValuePair<Guid, ParkedDownlinks>(parked.Session.DeviceId, parked)))
        {
            parked.Take();
            EndSession(parked.Session);
        }
    }

    private void EndSession(TcpDeviceSession session)
    {
        session.MarkClosed();
        try
        {
            _sink.OnSessionClosed(session);
        }
        catch (Exception ex)
        {
            TcpLog.SinkFailed(_logger, ex, ConnectionId, session.DeviceName);
        }
    }

    private void ApplySocketOptions()
    {
        var socket = _connection.Features.Get<IConnectionSocketFeature>()?.Socket;
        if (socket is null)
        {
            return;
        }

        var client = _integration.Options.ClientConfiguration;
        try
        {
            socket.NoDelay = client.TcpNoDelay;
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, client.SoKeepaliveOption);
            if (client.SoRcvBuf > 0)
            {
                socket.ReceiveBufferSize = client.SoRcvBuf * 1024;
            }

            if (client.SoSndBuf > 0)
            {
                socket.SendBufferSize = client.SoSndBuf * 1024;
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // The peer is already gone; the read loop will see it.
        }
    }
}
