using System.Net;
using System.Text.Json;

namespace Perf.EndToEnd;

/// <summary>PERF_DIAGNOSTICS (issue 12 profiling): off by default; on, the allocation profile and heap census answer.</summary>
public sealed class DiagnosticsTests
{
    [Fact]
    public async Task DiagnosticsEndpoints_AreAbsentByDefault()
    {
        await using var fixture = new HostFixture();
        await fixture.InitializeAsync();
        using var http = fixture.CreateHttpClient();
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/health/allocations")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("/health/heap")).StatusCode);
    }

    [Fact]
    public async Task WithDiagnostics_AllocationsAreSampledByType_AndHeapReportsLiveBytes()
    {
        await using var fixture = new HostFixture();
        var settings = HostFixture.FreePortSettings(fixture.DataDir);
        settings["PERF_DIAGNOSTICS"] = "true";
        await fixture.StartWithAsync(settings);
        using var http = fixture.CreateHttpClient();

        // Allocate well past the ~100 KB sampling mark in this process, then poll until samples arrive
        // (the listener receives runtime events asynchronously).
        var keep = new List<byte[]>();
        JsonElement root = default;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        do
        {
            for (int i = 0; i < 64; i++)
            {
                keep.Add(new byte[16 * 1024]);
            }

            root = JsonDocument.Parse(await http.GetStringAsync("/health/allocations?top=50")).RootElement;
        }
        while (root.GetProperty("samples").GetInt64() == 0 && DateTime.UtcNow < deadline);

        Assert.True(root.GetProperty("samples").GetInt64() > 0);
        Assert.True(root.GetProperty("allocatedBytes").GetInt64() > 0);
        Assert.Contains(root.GetProperty("types").EnumerateArray(), t => t.GetProperty("type").GetString() == "System.Byte[]");
        GC.KeepAlive(keep);

        var reset = JsonDocument.Parse(await http.GetStringAsync("/health/allocations?reset=true")).RootElement;
        Assert.True(reset.GetProperty("samples").GetInt64() > 0);

        var heap = JsonDocument.Parse(await http.GetStringAsync("/health/heap")).RootElement;
        Assert.True(heap.GetProperty("liveBytes").GetInt64() > 0);
        Assert.Equal(5, heap.GetProperty("generations").GetArrayLength());
    }
}
