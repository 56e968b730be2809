using System.Diagnostics;
using Xunit.Abstractions;

namespace Perf.Core.Tests;

public class ThroughputSmokeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task ManyConcurrentUplinks_AreGroupCommitted_AndAllAcknowledged()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path, o => o.CommitIntervalMs = 2);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var payload = Engines.Json("{\"temperature\":21.5,\"humidity\":40,\"on\":true}");
        const int count = 20_000;
        var sw = Stopwatch.StartNew();
        var tasks = new Task<UplinkResult>[count];
        for (var i = 0; i < count; i++)
        {
            tasks[i] = engine.DeviceApi.PostTelemetryAsync(device, payload).AsTask();
        }
        var results = await Task.WhenAll(tasks);
        sw.Stop();
        Assert.All(results, r => Assert.True(r.IsOk));
        output.WriteLine($"{count} uplinks in {sw.ElapsedMilliseconds} ms = {count / sw.Elapsed.TotalSeconds:F0}/s");
    }
}
