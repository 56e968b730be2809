using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Perf.Load.Wire;

namespace Perf.Load.Tests;

public sealed class WireTests
{
    [Theory]
    [InlineData(64)]
    [InlineData(200)]
    public void NumericJsonPayload_is_an_object_of_numbers_only_of_the_requested_size(int size)
    {
        var payload = MqttWire.NumericJsonPayload(size);

        Assert.Equal(size, payload.Length);
        using var json = JsonDocument.Parse(payload);
        var properties = json.RootElement.EnumerateObject().ToList();
        Assert.Equal(["temperature", "humidity", "pressure"], properties.Select(p => p.Name));
        Assert.All(properties, p => Assert.Equal(JsonValueKind.Number, p.Value.ValueKind));
    }

    [Fact]
    public void Subscribe_is_encoded_as_mqtt_3_1_1()
    {
        var packet = MqttWire.Subscribe(7, "a/+", 1);
        Assert.Equal(new byte[] { 0x82, 8, 0, 7, 0, 3, (byte)'a', (byte)'/', (byte)'+', 1 }, packet);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void A_publish_parses_back_into_topic_id_and_payload(int qos)
    {
        var payload = new byte[300]; // two-byte remaining length
        payload.AsSpan().Fill((byte)'x');
        var packet = MqttWire.Publish("v1/devices/me/rpc/request/42", payload, qos, out var idOffset);
        if (qos == 1)
        {
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(idOffset), 513);
        }

        Assert.True(MqttWire.TryReadFixedHeader(packet, out var type, out var header, out var remaining));
        Assert.Equal(MqttWire.PublishType, type);
        Assert.Equal(3, header);
        Assert.Equal(packet.Length, header + remaining);
        Assert.True(MqttWire.TryParsePublish(packet, header, out var topic, out var id, out var body));
        Assert.Equal("v1/devices/me/rpc/request/42", Encoding.UTF8.GetString(topic));
        Assert.Equal(qos == 1 ? 513 : 0, id);
        Assert.True(body.SequenceEqual(payload));
    }

    [Fact]
    public void PubAck_carries_the_packet_id()
    {
        Span<byte> ack = stackalloc byte[MqttWire.PubAckLength];
        MqttWire.WritePubAck(ack, 0x1234);
        Assert.Equal(new byte[] { 0x40, 2, 0x12, 0x34 }, ack.ToArray());
    }

    [Fact]
    public void Unique_payloads_are_valid_json_with_distinct_ts_and_seq()
    {
        var payload = MqttWire.UniquePayload(out var tsOffset, out var seqOffset);
        MqttWire.StampUnique(payload, tsOffset, seqOffset, 1_763_850_000_000, 0);
        using (var first = JsonDocument.Parse(payload))
        {
            Assert.Equal(1_763_850_000_000, first.RootElement.GetProperty("ts").GetInt64());
            Assert.Equal(MqttWire.UniqueSeqBase, first.RootElement.GetProperty("values").GetProperty("seq").GetInt64());
        }

        MqttWire.StampUnique(payload, tsOffset, seqOffset, 1_763_850_000_000, 123_456);
        using var second = JsonDocument.Parse(payload);
        Assert.Equal(1_763_850_123_456, second.RootElement.GetProperty("ts").GetInt64());
        Assert.Equal(MqttWire.UniqueSeqBase + 123_456, second.RootElement.GetProperty("values").GetProperty("seq").GetInt64());
    }
}
