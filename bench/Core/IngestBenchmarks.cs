using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Perf.Core.Telemetry;

namespace Perf.Bench.Core;

/// <summary>
/// The durable uplink path in-process: parse, append to the FASTER log, group commit (fsync), apply.
/// One operation is one acknowledged telemetry message of three data points; with 100 writers the
/// messages of one commit interval share a commit. Latest-value reads are what REST serves.
/// </summary>
[BenchmarkCategory("Core", "Ingest")]
public class IngestBenchmarks
{
    private static readonly ReadOnlySequence<byte> Payload = new(Encoding.UTF8.GetBytes("""{"temperature":25,"humidity":60.5,"active":true}"""));
    private EngineFixture _fixture = null!;
    private Task[] _pending = [];
    private readonly string[] _keys = ["temperature"];

    [Params(1, 100)]
    public int Writers { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _fixture = EngineFixture.OpenAsync(Writers).GetAwaiter().GetResult();
        _pending = new Task[Writers];
        _fixture.Engine.DeviceApi.PostTelemetryAsync(_fixture.Devices[0], Payload).AsTask().GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup() => _fixture.DisposeAsync().AsTask().GetAwaiter().GetResult();

    [Benchmark(OperationsPerInvoke = 100)]
    public async Task PostTelemetry_Durable()
    {
        // 100 messages per invocation whatever the writer count: Writers in flight at a time.
        for (var round = 0; round < 100 / Writers; round++)
        {
            for (var i = 0; i < Writers; i++)
            {
                _pending[i] = _fixture.Engine.DeviceApi.PostTelemetryAsync(_fixture.Devices[i], Payload).AsTask();
            }

            await Task.WhenAll(_pending);
        }
    }

    [Benchmark(OperationsPerInvoke = 1000)]
    public int LatestRead()
    {
        var n = 0;
        for (var i = 0; i < 1000; i++)
        {
            n += _fixture.Engine.Telemetry.GetLatest(_fixture.Devices[0].Id, _keys).Count;
        }

        return n;
    }
}
