using Microsoft.Extensions.Logging;
using Perf.Core;

namespace Perf.Kestrel.Mqtt.Internal;

// Refusals, violations, connect timeouts and keep-alive expiries are Debug: a hostile client can cause one
// per connection. ConnectionGuard turns them into one Warning per burst plus summaries (issue 13).
internal static partial class MqttLog
{
    [LoggerMessage(1, LogLevel.Debug, "MQTT {ConnectionId} device {Device} closed: protocol violation {Reason}")]
    public static partial void ProtocolViolation(ILogger logger, string connectionId, string? device, MqttProtocolError reason);

    [LoggerMessage(2, LogLevel.Debug, "MQTT {ConnectionId} refused: CONNACK {Code}")]
    public static partial void ConnectRefused(ILogger logger, string connectionId, MqttConnectReturnCode code);

    [LoggerMessage(3, LogLevel.Debug, "MQTT {ConnectionId} device {Device} connected (client id {ClientId}, keep-alive {KeepAlive} s)")]
    public static partial void Connected(ILogger logger, string connectionId, string device, string clientId, int keepAlive);

    [LoggerMessage(4, LogLevel.Debug, "MQTT {ConnectionId} closed: no CONNECT within {Timeout}")]
    public static partial void ConnectTimeout(ILogger logger, string connectionId, TimeSpan timeout);

    [LoggerMessage(5, LogLevel.Debug, "MQTT {ConnectionId} device {Device} closed: keep-alive {KeepAlive} s exceeded by 1.5x")]
    public static partial void KeepAliveExpired(ILogger logger, string connectionId, string? device, int keepAlive);

    [LoggerMessage(6, LogLevel.Information, "MQTT {ConnectionId} device {Device} closed: {Route} uplink {Status} {Reason}")]
    public static partial void UplinkRejected(ILogger logger, string connectionId, string? device, TopicRoute route, UplinkStatus status, string? reason);

    [LoggerMessage(7, LogLevel.Information, "MQTT {ConnectionId} device {Device} ignoring PUBLISH on unknown topic (logged once per connection)")]
    public static partial void UnknownTopic(ILogger logger, string connectionId, string? device);

    [LoggerMessage(8, LogLevel.Information, "MQTT {ConnectionId} device {Device} closed by server: {Reason}")]
    public static partial void ClosedByServer(ILogger logger, string connectionId, string? device, string reason);

    [LoggerMessage(9, LogLevel.Information, "MQTT {ConnectionId} device {Device} {Route} uplink acknowledged but not applied: {Status} {Reason}")]
    public static partial void UplinkDropped(ILogger logger, string connectionId, string? device, TopicRoute route, UplinkStatus status, string? reason);

    [LoggerMessage(10, LogLevel.Warning, "MQTT {ConnectionId} device {Device} request failed")]
    public static partial void RequestFailed(ILogger logger, Exception exception, string connectionId, string? device);

    [LoggerMessage(11, LogLevel.Information, "Lean socket transport listening on {EndPoint}")]
    public static partial void LeanTransportBound(ILogger logger, string endPoint);

    [LoggerMessage(12, LogLevel.Warning, "Lean socket transport on {EndPoint}: accept failed ({Error}), still accepting")]
    public static partial void LeanTransportAcceptFailed(ILogger logger, string endPoint, System.Net.Sockets.SocketError error);

    [LoggerMessage(13, LogLevel.Warning, "Lean socket transport on {EndPoint}: cannot accept ({Error}: out of file descriptors or memory, or fewer than {Spare} left to the rest of the process); new connections wait in the backlog until connections close ({Retries} times since the last report)")]
    public static partial void LeanTransportAcceptStarved(ILogger logger, string endPoint, System.Net.Sockets.SocketError error, int spare, int retries);

    // 40..49: TLS (ids kept apart from other branches' additions).
    [LoggerMessage(40, LogLevel.Information, "MQTT {ConnectionId} client certificate {Subject} (SHA-1 {Thumbprint}) is not the X.509 credentials of any device")]
    public static partial void UnknownCertificate(ILogger logger, string connectionId, string subject, string thumbprint);
}
