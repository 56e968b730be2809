using System.Diagnostics.Metrics;
using Perf.Core;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// Counters of the MQTT door (meter <c>Perf.Mqtt</c>; read with <c>dotnet-counters monitor --counters Perf.Mqtt</c>,
/// exported at <c>/metrics</c> by the host). Per-packet calls are an interlocked add (<see cref="ObservedCounter"/>): no allocation, no listener call.
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

    private static readonly ObservedCounter Accepted = new(
        Meter, "connections.accepted", description: "MQTT connections accepted by the listener");

    // Indexed by MqttPacketType (1..14); slot 0 is "other".
    private static readonly KeyValuePair<string, object?>[][] TypeTags = BuildTypeTags();

    // Per-packet counters: observed running totals (ObservedCounter), so a packet costs an interlocked add.
    private static readonly ObservedCounter PacketsIn = new(
        Meter, "messages.in", TypeTags, description: "MQTT packets received, by packet type");

    private static readonly ObservedCounter PacketsOut = new(
        Meter, "messages.out", TypeTags, description: "MQTT PUBLISH and PUBACK packets sent, by packet type");

    private static readonly ObservedCounter BytesIn = new(
        Meter, "bytes.in", unit: "By", description: "Bytes of MQTT packets received");

    private static readonly ObservedCounter BytesOut = new(
        Meter, "bytes.out", unit: "By", description: "Bytes flushed to MQTT connections");

    private static readonly ObservedCounter Acks = new(
        Meter, "acks", description: "PUBACKs written for QoS 1 uplinks (after the commit that holds them)");

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
        PacketsIn.Add((uint)index < (uint)TypeTags.Length ? index : 0, 1);
        BytesIn.Add(bytes);
    }

    public static void PublishSent() => PacketsOut.Add((int)MqttPacketType.Publish, 1);

    public static void PubAckSent()
    {
        PacketsOut.Add((int)MqttPacketType.PubAck, 1);
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
