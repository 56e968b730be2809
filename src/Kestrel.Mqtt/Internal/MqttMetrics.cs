using System.Diagnostics.Metrics;
using Perf.Core;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// Counters of the MQTT door (meter <c>Perf.Mqtt</c>; read with <c>dotnet-counters monitor --counters Perf.Mqtt</c>,
/// exported at <c>/metrics</c> by the host). Per-packet calls use pre-built tag arrays so they do not allocate.
/// </summary>
internal static class MqttMetrics
{
    public const string MeterName = "Perf.Mqtt";

    private static readonly Meter Meter = new(MeterName);

    private static readonly Counter<long> Refused = Meter.CreateCounter<long>(
        "uplinks.refused", description: "Uplinks the core did not apply (invalid JSON, rate limit, unknown RPC id, ...), tagged by status, topic kind and whether the session was kept");

    // Observed (not an UpDownCounter) so the exporter sees a fresh value at every scrape even when it stays flat.
    private static long _open;

    private static readonly ObservableUpDownCounter<long> Open = Meter.CreateObservableUpDownCounter(
        "connections", () => Volatile.Read(ref _open), description: "Open MQTT connections");

    private static readonly Counter<long> Accepted = Meter.CreateCounter<long>(
        "connections.accepted", description: "MQTT connections accepted by the listener");

    private static readonly Counter<long> PacketsIn = Meter.CreateCounter<long>(
        "messages.in", description: "MQTT packets received, by packet type");

    private static readonly Counter<long> PacketsOut = Meter.CreateCounter<long>(
        "messages.out", description: "MQTT PUBLISH and PUBACK packets sent, by packet type");

    private static readonly Counter<long> BytesIn = Meter.CreateCounter<long>(
        "bytes.in", unit: "By", description: "Bytes of MQTT packets received");

    private static readonly Counter<long> BytesOut = Meter.CreateCounter<long>(
        "bytes.out", unit: "By", description: "Bytes flushed to MQTT connections");

    private static readonly Counter<long> Acks = Meter.CreateCounter<long>(
        "acks", description: "PUBACKs written for QoS 1 uplinks (after the commit that holds them)");

    // Indexed by MqttPacketType (1..14); built once so Add does not allocate per packet.
    private static readonly KeyValuePair<string, object?>[][] TypeTags = BuildTypeTags();
    private static readonly KeyValuePair<string, object?>[] PublishTag = TypeTags[(int)MqttPacketType.Publish];
    private static readonly KeyValuePair<string, object?>[] PubAckTag = TypeTags[(int)MqttPacketType.PubAck];

    public static void UplinkRefused(UplinkStatus status, TopicRoute route, bool sessionKept)
    {
        if (Refused.Enabled)
        {
            Refused.Add(1, new("status", status), new("topic", route), new("kept", sessionKept));
        }
    }

    public static void ConnectionOpened()
    {
        Accepted.Add(1);
        Interlocked.Increment(ref _open);
    }

    public static void ConnectionClosed() => Interlocked.Decrement(ref _open);

    public static void PacketReceived(MqttPacketType type, long bytes)
    {
        var index = (int)type;
        PacketsIn.Add(1, (uint)index < (uint)TypeTags.Length ? TypeTags[index] : TypeTags[0]);
        BytesIn.Add(bytes);
    }

    public static void PublishSent() => PacketsOut.Add(1, PublishTag);

    public static void PubAckSent()
    {
        PacketsOut.Add(1, PubAckTag);
        Acks.Add(1);
    }

    public static void Flushed(long bytes)
    {
        if (bytes > 0)
        {
            BytesOut.Add(bytes);
        }
    }

    private static KeyValuePair<string, object?>[][] BuildTypeTags()
    {
        var tags = new KeyValuePair<string, object?>[(int)MqttPacketType.Disconnect + 1][];
        tags[0] = [new("type", "other")];
        for (var i = 1; i < tags.Length; i++)
        {
            tags[i] = [new("type", ((MqttPacketType)i).ToString().ToLowerInvariant())];
        }

        return tags;
    }
}
