using Microsoft.Extensions.Logging;

namespace Perf.Kestrel.Tcp.Internal;

internal static partial class TcpLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "TCP connection {ConnectionId} from {Remote} opened")]
    public static partial void Connected(ILogger logger, string connectionId, string? remote);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "TCP connection {ConnectionId} closed after {Frames} frames")]
    public static partial void Disconnected(ILogger logger, string connectionId, long frames);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "TCP connection {ConnectionId} closed: frame of {Length} bytes exceeds maxFrameLength {Limit}")]
    public static partial void FrameTooLong(ILogger logger, string connectionId, long length, int limit);
}
