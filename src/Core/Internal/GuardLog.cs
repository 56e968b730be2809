using System.Net;
using Microsoft.Extensions.Logging;

namespace Perf.Core.Internal;

/// <summary>Log lines of <see cref="ConnectionGuard"/>: Debug per event, Warning once per block or burst. No credential is ever logged.</summary>
internal static partial class GuardLog
{
    [LoggerMessage(101, LogLevel.Debug, "{Door}: connection from {Remote} refused: over the connection rate {Rate} per address")]
    public static partial void RefusedRate(ILogger logger, string door, IPAddress remote, string rate);

    [LoggerMessage(102, LogLevel.Debug, "{Door}: connection from {Remote} refused: connection limit {Max} reached")]
    public static partial void RefusedLimit(ILogger logger, string door, string remote, int max);

    [LoggerMessage(103, LogLevel.Debug, "{Door}: {Remote} is blocked for wrong credentials; refused without checking")]
    public static partial void RefusedBlocked(ILogger logger, string door, IPAddress remote);

    [LoggerMessage(104, LogLevel.Warning, "{Remote} blocked for {Seconds} s after {Failures} wrong credentials (last on {Door}: {Reason})")]
    public static partial void Blocked(ILogger logger, IPAddress remote, string door, int failures, string reason, double seconds);

    [LoggerMessage(105, LogLevel.Warning, "{Door}: {Kind} ({Detail}); further ones are summarised every {Seconds} s")]
    public static partial void BurstStarted(ILogger logger, string door, string kind, string detail, double seconds);

    [LoggerMessage(106, LogLevel.Warning, "{Door}: {Count} more {Kind} in the last {Seconds} s")]
    public static partial void BurstSummary(ILogger logger, string door, long count, string kind, double seconds);
}
