using Microsoft.Extensions.Logging;

namespace Perf.Coap.Internal;

internal static partial class CoapLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "CoAP listening on udp://{EndPoint}")]
    public static partial void Listening(ILogger logger, string endPoint);
}
