using Microsoft.Extensions.Logging.Abstractions;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Bench.Core;

/// <summary>A real engine (FASTER log, group commit, fsync) in a temporary directory, with devices.</summary>
internal sealed class EngineFixture : IAsyncDisposable
{
    private EngineFixture(PerfEngine engine, string dataDir, Device[] devices)
    {
        Engine = engine;
        DataDir = dataDir;
        Devices = devices;
    }

    public PerfEngine Engine { get; }
    public string DataDir { get; }
    public Device[] Devices { get; }

    public static async Task<EngineFixture> OpenAsync(int devices, bool fsync = true)
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-bench-" + Guid.NewGuid().ToString("N"));
        var engine = await PerfEngine.OpenAsync(new CoreOptions { DataDir = dataDir, FsyncOnCommit = fsync }, NullLoggerFactory.Instance, CancellationToken.None);
        var tenant = (await engine.Registry.CreateTenantAsync("bench")).Value!;
        var list = new Device[devices];
        for (var i = 0; i < devices; i++)
        {
            list[i] = (await engine.Registry.CreateDeviceAsync(tenant.Id, "bench-" + i)).Value!;
        }

        return new EngineFixture(engine, dataDir, list);
    }

    public async ValueTask DisposeAsync()
    {
        await Engine.DisposeAsync();
        Directory.Delete(DataDir, recursive: true);
    }
}
