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

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning, Message = "Data directory {DataDir}: {FreeMb} MB free, below the warning level of {ThresholdMb} MB (DATA_DIR_LOW_SPACE_MB); uplinks are refused once the disk is full")]
    public static partial void DataDirLowSpace(ILogger logger, string dataDir, long freeMb, long thresholdMb);

    [LoggerMessage(EventId = 6, Level = LogLevel.Information, Message = "Data directory {DataDir}: {FreeMb} MB free, back above the warning level of {ThresholdMb} MB")]
    public static partial void DataDirSpaceRecovered(ILogger logger, string dataDir, long freeMb, long thresholdMb);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "Data directory {DataDir}: free space could not be read: {Reason}")]
    public static partial void DataDirSpaceUnknown(ILogger logger, string dataDir, string reason);

    [LoggerMessage(EventId = 8, Level = LogLevel.Critical, Message = "Start-up failed: {Reason} Exiting with code 1.")]
    public static partial void StartFailed(ILogger logger, string reason);

    // 40..49: TLS (ids kept apart from other branches' additions).
    [LoggerMessage(EventId = 40, Level = LogLevel.Information, Message = "Door {Door} TLS handshake with {Remote} failed: {Reason}")]
    public static partial void TlsHandshakeFailed(ILogger logger, string door, string remote, string reason);

    [LoggerMessage(EventId = 43, Level = LogLevel.Warning, Message = "Door {Door}: {Count} more TLS handshake failures were not logged (at most {PerSecond} lines a second)")]
    public static partial void TlsHandshakeFailuresSuppressed(ILogger logger, string door, int count, int perSecond);

    [LoggerMessage(EventId = 41, Level = LogLevel.Information, Message = "Door {Door} TLS certificate {Subject} (SHA-1 {Thumbprint}), valid {NotBefore:u} to {NotAfter:u}, {ChainLength} intermediate(s)")]
    public static partial void TlsCertificate(ILogger logger, string door, string subject, string thumbprint, DateTime notBefore, DateTime notAfter, int chainLength);

    [LoggerMessage(EventId = 42, Level = LogLevel.Warning, Message = "Door {Door} TLS certificate {Subject} is outside its validity period ({NotBefore:u} to {NotAfter:u}): clients will refuse it")]
    public static partial void TlsCertificateNotValidNow(ILogger logger, string door, string subject, DateTime notBefore, DateTime notAfter);
}
