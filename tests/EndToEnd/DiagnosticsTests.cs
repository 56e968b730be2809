using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

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

    /// <summary>
    /// appsettings.json turns the hosting diagnostics category off: while any of its levels is enabled, ASP.NET Core
    /// starts an Activity and a logging scope for every request (about 600 B per REST call, issue 12 row 7), though
    /// it logs nothing at Warning. Startup failures and unhandled request exceptions come from other categories.
    /// </summary>
    [Fact]
    public async Task HostingDiagnosticsCategory_IsOff_WhileStartupAndRequestFailuresAreStillLogged()
    {
        await using var fixture = new HostFixture();
        await fixture.InitializeAsync();
        var loggers = fixture.Host.Services.GetRequiredService<ILoggerFactory>();
        Assert.False(loggers.CreateLogger("Microsoft.AspNetCore.Hosting.Diagnostics").IsEnabled(LogLevel.Critical));
        Assert.True(loggers.CreateLogger("Microsoft.Extensions.Hosting.Internal.Host").IsEnabled(LogLevel.Error));
        Assert.True(loggers.CreateLogger("Microsoft.AspNetCore.Server.Kestrel").IsEnabled(LogLevel.Error));
        Assert.True(loggers.CreateLogger("Perf.Core").IsEnabled(LogLevel.Information));

        using var http = fixture.CreateHttpClient();
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/tenant/devices?pageSize=1&page=0")).StatusCode);
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
