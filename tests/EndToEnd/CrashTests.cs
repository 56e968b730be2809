using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Perf.EndToEnd;

/// <summary>The durability contract: whatever was acknowledged survives SIGKILL of the server.</summary>
public sealed class CrashTests
{
    [Fact]
    public async Task AcknowledgedWrites_SurviveSigkill_MidStream()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-crash-" + Guid.NewGuid().ToString("N"));
        var settings = HostFixture.FreePortSettings(dataDir);
        settings["MQTT_ENABLED"] = "false";
        settings["COAP_ENABLED"] = "false";
        settings["TCP_INTEGRATION_ENABLED"] = "false";
        settings["EDGES_ENABLED"] = "false";
        var acknowledged = new ConcurrentBag<long>();
        string deviceId;
        try
        {
            using (var server = HostProcess.Start(settings))
            {
                var ports = await server.WaitForDoorsAsync(1, TimeSpan.FromSeconds(30));
                using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{ports["http"]}") };
                var token = await LoginAsync(http);
                http.DefaultRequestHeaders.Add("X-Authorization", "Bearer " + token);
                var device = await (await http.PostAsJsonAsync("/api/device", new { name = "crash-device" })).Content.ReadFromJsonAsync<JsonObject>();
                deviceId = device!["id"]!["id"]!.GetValue<string>();

                // Eight writers stream points; each point counts only once the server answered 200.
                using var enough = new CancellationTokenSource();
                var sequence = 0L;
                var writers = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
                {
                    while (!enough.IsCancellationRequested)
                    {
                        var ts = Interlocked.Increment(ref sequence);
                        try
                        {
                            var response = await http.PostAsJsonAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/timeseries/ANY", new { ts, values = new { seq = ts } });
                            if (response.IsSuccessStatusCode)
                            {
                                acknowledged.Add(ts);
                                if (acknowledged.Count >= 400)
                                {
                                    await enough.CancelAsync();
                                }
                            }
                        }
                        catch (HttpRequestException)
                        {
                            return; // The server died under us: expected.
                        }
                    }
                })).ToArray();

                await Task.WhenAny(Task.WhenAll(writers), Task.Delay(Timeout.Infinite, enough.Token).ContinueWith(_ => { }, TaskScheduler.Default));
                server.KillHard(); // SIGKILL while the writers are still writing.
                await Task.WhenAll(writers);
            }

            Assert.True(acknowledged.Count >= 400);
            using var restarted = HostProcess.Start(settings);
            var newPorts = await restarted.WaitForDoorsAsync(1, TimeSpan.FromSeconds(30));
            using var reader = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{newPorts["http"]}") };
            reader.DefaultRequestHeaders.Add("X-Authorization", "Bearer " + await LoginAsync(reader));
            var history = await reader.GetFromJsonAsync<JsonObject>(
                $"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys=seq&startTs=0&endTs=1000000&limit=1000000&orderBy=ASC");
            var present = history!["seq"]!.AsArray().Select(p => p!["ts"]!.GetValue<long>()).ToHashSet();
            var lost = acknowledged.Where(ts => !present.Contains(ts)).OrderBy(ts => ts).ToArray();
            Assert.True(lost.Length == 0, $"{lost.Length} acknowledged points lost, first: {string.Join(',', lost.Take(10))}");
            restarted.Terminate();
            Assert.Equal(0, await restarted.WaitForExitAsync(TimeSpan.FromSeconds(10)));
        }
        finally
        {
            TestDirectories.Delete(dataDir);
        }
    }

    private static async Task<string> LoginAsync(HttpClient http)
    {
        var response = await http.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = "tenant" });
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<JsonObject>())!["token"]!.GetValue<string>();
    }
}
