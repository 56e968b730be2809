using Microsoft.Extensions.Logging;
using Perf.Core;

namespace Perf.Kestrel.Tcp.Internal;

internal static partial class TcpLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "TCP {Integration} connection {ConnectionId} from {Remote} opened")]
    public static partial void Connected(ILogger logger, string integration, string connectionId, string? remote);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "TCP connection {ConnectionId} closed after {Frames} frames")]
    public static partial void Disconnected(ILogger logger, string connectionId, long frames);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "TCP connection {ConnectionId}: {Reason}: {Detail}; the frame is dropped and the connection goes on")]
    public static partial void FrameDropped(ILogger logger, string connectionId, FramingError reason, string detail);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "TCP connection {ConnectionId} closed: {Reason}: {Detail}")]
    public static partial void FramingClosed(ILogger logger, string connectionId, FramingError reason, string detail);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "TCP connection {ConnectionId}: uplink converter rejected a frame: {Error}")]
    public static partial void ConverterFailed(ILogger logger, string connectionId, string error);

    [LoggerMessage(EventId = 6, Level = LogLevel.Warning, Message = "TCP connection {ConnectionId}: uplink of device {DeviceName} rejected: {Status} {Reason}")]
    public static partial void UplinkRejected(ILogger logger, string connectionId, string deviceName, UplinkStatus status, string? reason);

    [LoggerMessage(EventId = 7, Level = LogLevel.Error, Message = "TCP connection {ConnectionId}: uplink sink failed for device {DeviceName}")]
    public static partial void SinkFailed(ILogger logger, Exception exception, string connectionId, string deviceName);

    [LoggerMessage(EventId = 8, Level = LogLevel.Debug, Message = "TCP connection {ConnectionId} is now the session of device {DeviceName} ({DeviceId})")]
    public static partial void SessionOpened(ILogger logger, string connectionId, string deviceName, Guid deviceId);

    [LoggerMessage(EventId = 9, Level = LogLevel.Debug, Message = "TCP connection {ConnectionId}: session of device {DeviceName} closed by the core: {Reason}")]
    public static partial void SessionClosedByCore(ILogger logger, string connectionId, string deviceName, string reason);

    [LoggerMessage(EventId = 10, Level = LogLevel.Debug, Message = "TCP connection {ConnectionId}: {MsgType} downlink of {Bytes} bytes sent to device {DeviceName}")]
    public static partial void DownlinkSent(ILogger logger, string connectionId, string msgType, int bytes, string deviceName);

    [LoggerMessage(EventId = 11, Level = LogLevel.Warning, Message = "TCP connection {ConnectionId}: {MsgType} downlink for device {DeviceName} not encoded: {Error}")]
    public static partial void DownlinkFailed(ILogger logger, string connectionId, string msgType, string deviceName, string error);

    [LoggerMessage(EventId = 12, Level = LogLevel.Warning, Message = "TCP connection {ConnectionId}: {MsgType} downlink for device {DeviceName} dropped: queue full")]
    public static partial void DownlinkDropped(ILogger logger, string connectionId, string msgType, string deviceName);

    [LoggerMessage(EventId = 13, Level = LogLevel.Error, Message = "TCP connection {ConnectionId} failed")]
    public static partial void ConnectionFailed(ILogger logger, Exception exception, string connectionId);

    [LoggerMessage(EventId = 14, Level = LogLevel.Warning, Message = "TCP {Integration}: no ITcpUplinkSink is registered; uplinks are rejected until the host wires the door to the core")]
    public static partial void SinkNotWired(ILogger logger, string integration);

    [LoggerMessage(EventId = 15, Level = LogLevel.Debug, Message = "TCP connection {ConnectionId}: {Count} downlinks queued while device {DeviceName} was disconnected are sent now")]
    public static partial void ParkedDelivered(ILogger logger, string connectionId, int count, string deviceName);
}
