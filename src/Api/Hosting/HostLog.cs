namespace Perf.Api.Hosting;

internal static partial class HostLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Door {Door} listening on {Scheme}://{EndPoint}")]
    public static partial void DoorBound(ILogger logger, string door, string scheme, string endPoint);

    [LoggerMessage(EventId = 2, Level = LogLevel.Information, Message = "Door {Door} disabled by configuration")]
    public static partial void DoorDisabled(ILogger logger, string door);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "Data directory {DataDir}")]
    public static partial void DataDir(ILogger logger, string dataDir);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "Stopped: storage flushed")]
    public static partial void Stopped(ILogger logger);
}
