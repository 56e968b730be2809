using Microsoft.Extensions.Logging;
using Perf.Core;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>Stands in until the host registers its <see cref="ITcpUplinkSink"/>: every uplink is Unavailable.</summary>
internal sealed class UnwiredTcpUplinkSink(ILogger<UnwiredTcpUplinkSink> logger) : ITcpUplinkSink
{
    private int _warned;

    public ValueTask<TcpUplinkResult> PublishAsync(TcpUplink uplink)
    {
        if (Interlocked.Exchange(ref _warned, 1) == 0)
        {
            TcpLog.SinkNotWired(logger, uplink.Integration.Name);
        }

        return ValueTask.FromResult(TcpUplinkResult.Fail(UplinkStatus.Unavailable, "the TCP door is not wired to the core"));
    }

    public void OnSessionOpened(IDeviceSession session)
    {
    }

    public void OnSessionClosed(IDeviceSession session)
    {
    }
}
