using System.Diagnostics.Metrics;
using Perf.Core;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// Counters of the MQTT door (meter <c>Perf.Mqtt</c>; read with <c>dotnet-counters monitor --counters Perf.Mqtt</c>).
/// </summary>
internal static class MqttMetrics
{
    private static readonly Meter Meter = new("Perf.Mqtt");

    private static readonly Counter<long> Refused = Meter.CreateCounter<long>(
        "perf.mqtt.uplinks.refused", description: "Uplinks the core did not apply (invalid JSON, rate limit, unknown RPC id, ...), tagged by status, topic kind and whether the session was kept");

    public static void UplinkRefused(UplinkStatus status, TopicRoute route, bool sessionKept)
    {
        if (Refused.Enabled)
        {
            Refused.Add(1, new("status", status), new("topic", route), new("kept", sessionKept));
        }
    }
}
