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
    [InlineData(10)]
    [InlineData(300)] // two-byte remaining length
    public void A_qos0_publish_written_in_place_matches_the_allocating_encoder(int payloadSize)
    {
        var payload = new byte[payloadSize];
        payload.AsSpan().Fill((byte)'p');
        var expected = MqttWire.Publish("v1/devices/me/rpc/response/123", payload, 0, out _);
        var buffer = new byte[MqttWire.PublishQos0Size("v1/devices/me/rpc/response/123".Length, payload.Length) + 5];
        var written = MqttWire.WritePublishQos0(buffer, "v1/devices/me/rpc/response/"u8, "123"u8, payload);
        Assert.Equal(expected.Length, written);
        Assert.Equal(expected, buffer.AsSpan(0, written).ToArray());
    }

    [Theory]
    [InlineData(64, 10)]
    [InlineData(256, 32)]
    [InlineData(7, 10)]
    public void Rpc_workers_spread_evenly_and_stay_under_the_servers_pending_limit_by_default(int concurrency, int devices)
    {
        Assert.Equal(devices, Scenarios.RpcScenario.DefaultDevices(concurrency));
        var perDevice = new int[devices];
        for (var w = 0; w < concurrency; w++)
        {
            perDevice[Scenarios.RpcScenario.DeviceOf(w, devices)]++;
        }

        Assert.True(perDevice.Max() <= Scenarios.RpcScenario.ServerPendingLimit);
        Assert.Equal(Scenarios.RpcScenario.CallsPerDevice(concurrency, devices), perDevice.Max());
        Assert.True(perDevice.Max() - perDevice.Min() <= 1);
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
