namespace Perf.Api.Tcp;

internal static partial class TcpHostLog
{
    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "TCP integration {Name} ({Id}) listening on tcp://{EndPoint}")]
    public static partial void IntegrationBound(ILogger logger, string name, Guid id, string endPoint);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information, Message = "TCP integration {Name} ({Id}) stopped listening")]
    public static partial void IntegrationStopped(ILogger logger, string name, Guid id);

    [LoggerMessage(EventId = 103, Level = LogLevel.Warning, Message = "TCP integration {Name} ({Id}) could not start: {Reason}")]
    public static partial void IntegrationFailed(ILogger logger, string name, Guid id, string reason);

    [LoggerMessage(EventId = 104, Level = LogLevel.Warning, Message = "Skipped stored integration entity {File}: {Reason}")]
    public static partial void StoredEntitySkipped(ILogger logger, string file, string reason);
}
