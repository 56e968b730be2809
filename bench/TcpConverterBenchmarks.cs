using BenchmarkDotNet.Attributes;
using Perf.Core.Telemetry;
using Perf.Kestrel.Tcp;

namespace Perf.Bench;

/// <summary>
/// One seed line through each uplink converter kind: the built-in CSV converter (expected 0 B/op for a
/// known device), JSON passthrough, and the seed's JavaScript decoder on a pooled Jint engine.
/// </summary>
[BenchmarkCategory("Tcp", "Converter")]
public class TcpConverterBenchmarks
{
    // The seed's decoder, verbatim (one copy, linked from tests/Kestrel.Tcp.Tests/SeedScripts.cs).
    private const string SeedDecoder = Perf.Kestrel.Tcp.Tests.SeedScripts.Decoder;

    private static readonly byte[] Line = "SN-002,default,temperature,25.7,humidity,69"u8.ToArray();
    private static readonly byte[] Json = """{"deviceName":"SN-002","deviceType":"default","telemetry":{"temperature":25.7,"humidity":69}}"""u8.ToArray();

    private readonly UplinkBatch _batch = new();
    private IUplinkConverter _csv = null!;
    private IUplinkConverter _json = null!;
    private IUplinkConverter _js = null!;

    [GlobalSetup]
    public void Setup()
    {
        var keys = new KeyTable();
        var metadata = new Dictionary<string, string>();
        Func<long> clock = static () => 1_700_000_000_000;
        _csv = TcpIntegration.CreateUplinkConverter(TcpConverterConfiguration.CsvDefault(), metadata, keys, clock);
        _json = TcpIntegration.CreateUplinkConverter(new TcpConverterConfiguration { ScriptLang = TcpScriptLang.JSON }, metadata, keys, clock);
        _js = TcpIntegration.CreateUplinkConverter(TcpConverterConfiguration.JsDecoder(SeedDecoder), metadata, keys, clock);
    }

    private bool Run(IUplinkConverter converter, byte[] payload)
    {
        _batch.Clear();
        return converter.TryConvert(payload, _batch, out _);
    }

    [Benchmark(Baseline = true)]
    public bool BuiltInCsv() => Run(_csv, Line);

    [Benchmark]
    public bool BuiltInJson() => Run(_json, Json);

    [Benchmark]
    public bool SeedJavaScriptDecoder() => Run(_js, Line);
}
