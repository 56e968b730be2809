using Perf.Api.Edge;
using Perf.Api.Edge.Protos;
using Perf.Api.Edge.Protos.Transport;
using Perf.Core.Telemetry;

namespace Perf.Fuzz.Tests;

/// <summary>The edge conversions the fuzzer found wanting, as named cases (the inputs are in regressions/edge-proto).</summary>
public class EdgeProtoRegressionTests
{
    private readonly KeyTable _keys = new();

    [Theory]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NegativeInfinity)]
    public void ANonFiniteDouble_IsRejectedWithItsKey(double value)
    {
        var ok = EdgeProto.TryToKv(new KeyValueProto { Key = "temperature", Type = KeyValueType.DoubleV, DoubleV = value }, _keys, out _, out var error);

        Assert.False(ok);
        Assert.Equal("non-finite double_v for key 'temperature'", error);
    }

    [Theory]
    [InlineData("{\"someN\u001amber\":42}")]
    [InlineData("{")]
    [InlineData("")]
    public void AJsonValueThatIsNotJson_IsRejectedWithItsKey(string json)
    {
        var ok = EdgeProto.TryToKv(new KeyValueProto { Key = "config", Type = KeyValueType.JsonV, JsonV = json }, _keys, out _, out var error);

        Assert.False(ok);
        Assert.Equal("json_v for key 'config' is not JSON", error);
    }

    [Fact]
    public void AnEmptyKey_IsRejected_AsTheJsonParserRejectsIt()
    {
        Assert.False(EdgeProto.TryToKv(new KeyValueProto { Key = "", Type = KeyValueType.LongV, LongV = 1 }, _keys, out _, out var error));
        Assert.Equal("empty key", error);
    }

    [Fact]
    public void ValidKeyValues_StillConvert()
    {
        Assert.True(EdgeProto.TryToKv(new KeyValueProto { Key = "config", Type = KeyValueType.JsonV, JsonV = "{\"a\":[1,2]}" }, _keys, out var json, out _));
        Assert.True(EdgeProto.TryToKv(new KeyValueProto { Key = "t", Type = KeyValueType.DoubleV, DoubleV = -0.0 }, _keys, out var real, out _));

        Assert.Equal(new KvEntry("config", "{\"a\":[1,2]}", isJson: true), json);
        Assert.Equal(new KvEntry("t", -0.0), real);
    }

    [Fact]
    public void ARejectedTelemetryList_LeavesNoPartialEntries()
    {
        var entries = new List<TsKvEntry> { new(1, new KvEntry("earlier", 1L)) };
        var msg = new PostTelemetryMsg();
        msg.TsKvList.Add(new TsKvListProto
        {
            Ts = 5,
            Kv = { new KeyValueProto { Key = "ok", Type = KeyValueType.LongV, LongV = 2 }, new KeyValueProto { Key = "bad", Type = KeyValueType.DoubleV, DoubleV = double.NaN } },
        });

        Assert.False(EdgeProto.TryAddTelemetry(entries, msg, _keys, 99, out var error));
        Assert.Equal("non-finite double_v for key 'bad'", error);
        Assert.Equal([new TsKvEntry(1, new KvEntry("earlier", 1L))], entries);
    }

    [Theory]
    [InlineData("{\"name\":true,\"type\":\"t\",\"label\":null}", "device entity 'name' must be a string, not True")]
    [InlineData("{\"name\":\"d\",\"type\":[\"x\"]}", "device entity 'type' must be a string, not Array")]
    [InlineData("{\"name\":\"d\",\"label\":{}}", "device entity 'label' must be a string, not Object")]
    [InlineData("{\"name\":7}", "device entity 'name' must be a string, not Number")]
    [InlineData("{\"name\":\"d\",\"label\":\"\\ud800\"}", "device entity 'label' is not valid UTF-16 text")]
    public void ADeviceEntityFieldOfAnotherKind_IsANamedError_NotAnException(string entity, string expected)
    {
        Assert.False(EdgeProto.TryReadDeviceEntity(entity, out _, out var error));
        Assert.Equal(expected, error);
    }

    [Fact]
    public void ADeviceEntityWithADuplicateKey_IsNotJsonForTheServer()
    {
        Assert.False(EdgeProto.TryReadDeviceEntity("{\"name\":true,\"type\":true,\"type\":null}", out _, out var error));
        Assert.StartsWith("device entity is not JSON: ", error);
    }

    [Fact]
    public void ADeviceEntityWithALoneSurrogateInAKey_IsNotJsonForTheServer()
    {
        Assert.False(EdgeProto.TryReadDeviceEntity("{\"\\ud800\":\"Edge device 1\",\"type\":\"thermostat\"}", out _, out var error));
        Assert.StartsWith("device entity is not JSON: ", error);
    }

    [Fact]
    public void AWellFormedDeviceEntity_IsRead()
    {
        Assert.True(EdgeProto.TryReadDeviceEntity("{\"name\":\"Edge device 1\",\"type\":\"thermostat\",\"label\":null,\"additionalInfo\":{\"a\":1}}", out var device, out _));
        Assert.Equal(new EdgeDeviceEntity("Edge device 1", "thermostat", null, "{\"a\":1}"), device);
    }
}
