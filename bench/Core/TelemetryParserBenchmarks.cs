using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Perf.Bench.Baselines;
using Perf.Core.Telemetry;

namespace Perf.Bench.Core;

/// <summary>
/// The telemetry JSON parser on every form of the device API. Numeric payloads must allocate nothing:
/// keys are interned and numbers and booleans live inline in <see cref="KvEntry"/>.
/// </summary>
[BenchmarkCategory("Core", "Parser")]
public class TelemetryParserBenchmarks
{
    private static readonly byte[] FlatObject = Encoding.UTF8.GetBytes("""{"temperature":25,"humidity":60.5,"active":true}""");
    private static readonly byte[] ArrayOfObjects = Encoding.UTF8.GetBytes("""[{"temperature":25},{"humidity":60.5},{"active":false}]""");
    private static readonly byte[] TsValues = Encoding.UTF8.GetBytes("""{"ts":1451649600512,"values":{"temperature":25,"humidity":60.5,"active":true}}""");
    private static readonly byte[] ArrayOfTsValues = Encoding.UTF8.GetBytes("""[{"ts":1451649600512,"values":{"temperature":25}},{"ts":1451649600513,"values":{"temperature":26,"humidity":61.5}}]""");
    private static readonly byte[] WithString = Encoding.UTF8.GetBytes("""{"temperature":25,"status":"ok"}""");

    private readonly KeyTable _keys = new();
    private readonly List<TsKvEntry> _output = new(16);
    private readonly List<KvEntry> _attributes = new(16);
    private ReadOnlySequence<byte> _splitTsValues;

    [GlobalSetup]
    public void Setup() => _splitTsValues = MultiSegment.Create(TsValues, 16);

    [Benchmark(Baseline = true)]
    public int Object_Numeric() => Parse(FlatObject);

    [Benchmark]
    public int ArrayOfObjects_Numeric() => Parse(ArrayOfObjects);

    [Benchmark]
    public int TsValues_Numeric() => Parse(TsValues);

    [Benchmark]
    public int ArrayOfTsValues_Numeric() => Parse(ArrayOfTsValues);

    [Benchmark]
    public int TsValues_Numeric_16ByteSegments()
    {
        _output.Clear();
        TelemetryJsonParser.TryParseTelemetry(_splitTsValues, 0, _keys, _output, out _);
        return _output.Count;
    }

    /// <summary>
    /// A string value repeated from the key's previous message is that message's instance (KeyTable's per-key
    /// last value): 0 B. A new value would cost its string.
    /// </summary>
    [Benchmark]
    public int Object_WithStringValue() => Parse(WithString);

    [Benchmark]
    public int Attributes_Numeric()
    {
        _attributes.Clear();
        TelemetryJsonParser.TryParseAttributes(FlatObject, _keys, _attributes, out _);
        return _attributes.Count;
    }

    private int Parse(byte[] json)
    {
        _output.Clear();
        TelemetryJsonParser.TryParseTelemetry(json, 0, _keys, _output, out _);
        return _output.Count;
    }
}
