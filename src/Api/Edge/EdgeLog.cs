namespace Perf.Api.Edge;

internal static partial class EdgeLog
{
    [LoggerMessage(1, LogLevel.Information, "Edge {EdgeId} ({Name}) connected from {Peer}, version {Version}")]
    public static partial void Connected(ILogger logger, Guid edgeId, string name, string peer, string version);

    [LoggerMessage(2, LogLevel.Information, "Edge {EdgeId} disconnected")]
    public static partial void Disconnected(ILogger logger, Guid edgeId);

    [LoggerMessage(3, LogLevel.Warning, "Edge connect rejected ({Code}) from {Peer}: {Reason}")]
    public static partial void Rejected(ILogger logger, string code, string peer, string reason);

    [LoggerMessage(4, LogLevel.Warning, "Edge {EdgeId} downlink {Seq} failed: {Error}")]
    public static partial void DownlinkFailed(ILogger logger, Guid edgeId, long seq, string error);

    [LoggerMessage(5, LogLevel.Debug, "Edge {EdgeId} uplink {UplinkId} rejected: {Error}")]
    public static partial void UplinkRejected(ILogger logger, Guid edgeId, int uplinkId, string error);

    [LoggerMessage(6, LogLevel.Error, "Edge {EdgeId}: building a downlink for device {DeviceId} failed")]
    public static partial void EventFailed(ILogger logger, Guid edgeId, Guid deviceId, Exception error);

    [LoggerMessage(7, LogLevel.Information, "Edge {EdgeId}: full sync queued, {Devices} devices")]
    public static partial void FullSyncQueued(ILogger logger, Guid edgeId, int devices);

    [LoggerMessage(9, LogLevel.Debug, "Edge {EdgeId} uplink {UplinkId}: skipped the data of {EntityType} {EntityId}, which the server does not have")]
    public static partial void Skipped(ILogger logger, Guid edgeId, int uplinkId, string entityType, Guid entityId);

    [LoggerMessage(EventId = 10, Message = "Edge stream from {Peer} ended: a message that is not the edge protocol's ({Reason})")]
    public static partial void Malformed(ILogger logger, LogLevel level, string peer, string reason);

    [LoggerMessage(8, LogLevel.Error, "Edge {EdgeId}: stream failed")]
    public static partial void StreamFailed(ILogger logger, Guid edgeId, Exception error);
}
