using System.Text;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests.Telemetry;

public class AttributeJsonParserTests
{
    private readonly KeyTable _keys = new();

    [Fact]
    public void AFlatObject_GivesOneTypedEntryPerKey()
    {
        List<KvEntry> entries = Attributes("""{"fw":"1.2","count":3,"ratio":0.25,"on":false,"cfg":{"a":[1]}}""");

        Assert.Equal(
            [
                new KvEntry("fw", "1.2"),
                new KvEntry("count", 3L),
                new KvEntry("ratio", 0.25),
                new KvEntry("on", false),
                new KvEntry("cfg", """{"a":[1]}""", isJson: true),
            ],
            entries);
    }

    [Fact]
    public void TsAndValuesKeys_AreOrdinaryAttributes()
    {
        List<KvEntry> entries = Attributes("""{"ts":1,"values":{"a":1}}""");

        Assert.Equal([new KvEntry("ts", 1L), new KvEntry("values", """{"a":1}""", isJson: true)], entries);
    }

    [Fact]
    public void NullValues_AreSkipped()
    {
        Assert.Equal([new KvEntry("b", true)], Attributes("""{"a":null,"b":true}"""));
    }

    [Fact]
    public void AnEmptyObject_IsValid_AndGivesNoEntries()
    {
        Assert.Empty(Attributes("{}"));
    }

    [Theory]
    [InlineData("""[{"a":1}]""", "expected a JSON object at byte 0")]
    [InlineData("1", "expected a JSON object at byte 0")]
    [InlineData("""{"":1}""", "empty key at byte 1")]
    public void AnythingButAFlatObjectWithNamedKeys_IsRejected(string json, string message)
    {
        Assert.False(TelemetryJsonParser.TryParseAttributes(Encoding.UTF8.GetBytes(json), _keys, [], out JsonParseError error));

        Assert.Equal(message, error.Message);
    }

    [Theory]
    [InlineData("""{"a":1""")]
    [InlineData("""{"a":1,}""")]
    [InlineData("""{"a":1}]""")]
    public void MalformedJson_IsRejected_AsContiguousBytesAndAsSegments(string json)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(json);

        Assert.False(TelemetryJsonParser.TryParseAttributes(bytes, _keys, [], out JsonParseError error));
        Assert.False(TelemetryJsonParser.TryParseAttributes(SegmentedSequence.OneBytePerSegment(bytes), _keys, [], out JsonParseError segmented));
        Assert.Equal(error, segmented);
    }

    [Fact]
    public void ANumericPayload_ParsesWithoutAllocating_AfterWarmUp()
    {
        ReadOnlySpan<byte> json = """{"temperature":25,"humidity":60.5,"active":true}"""u8;
        var output = new List<KvEntry>(8);
        for (int i = 0; i < 100; i++)
        {
            output.Clear();
            Assert.True(TelemetryJsonParser.TryParseAttributes(json, _keys, output, out _));
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 1000; i++)
        {
            output.Clear();
            TelemetryJsonParser.TryParseAttributes(json, _keys, output, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    private List<KvEntry> Attributes(string json)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(json);
        var output = new List<KvEntry>();
        Assert.True(TelemetryJsonParser.TryParseAttributes(bytes, _keys, output, out JsonParseError error), error.Message);

        var segmented = new List<KvEntry>();
        Assert.True(TelemetryJsonParser.TryParseAttributes(SegmentedSequence.OneBytePerSegment(bytes), _keys, segmented, out error), error.Message);
        Assert.Equal(output, segmented);
        return output;
    }
}
