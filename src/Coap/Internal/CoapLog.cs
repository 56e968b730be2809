using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Perf.Coap.Internal;

internal static partial class CoapLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "CoAP listening on udp://{EndPoint}")]
    public static partial void Listening(ILogger logger, string endPoint);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "CoAP datagram ignored: {Reason}")]
    public static partial void Malformed(ILogger logger, CoapFormatError reason);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "CoAP request failed")]
    public static partial void RequestFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 4, Level = LogLevel.Debug, Message = "CoAP send failed: {Error}")]
    public static partial void SendFailed(ILogger logger, SocketError error);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "CoAP observer of device {DeviceId} ({Kind}) removed")]
    public static partial void ObserverRemoved(ILogger logger, Guid deviceId, CoapObserveKind kind);

    [LoggerMessage(EventId = 6, Level = LogLevel.Error, Message = "CoAP receive loop error")]
    public static partial void LoopError(ILogger logger, Exception exception);
}
