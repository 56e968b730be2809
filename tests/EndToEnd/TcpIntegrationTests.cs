using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Perf.EndToEnd;

/// <summary>
/// The seed's TCP integration tutorial (001_55d7b12016bbd92e) against the real host: converters and
/// integrations created over REST with the seed's exact scripts, the seed's <c>nc</c> commands run for real.
/// </summary>
[Collection(HostCollection.Name)]
public sealed class TcpIntegrationTests(HostFixture fixture)
{
    // The seed's scripts, verbatim: one copy, linked from tests/Kestrel.Tcp.Tests/SeedScripts.cs.
    internal const string SeedDecoder = Perf.Kestrel.Tcp.Tests.SeedScripts.Decoder;

    internal const string SeedEncoder = Perf.Kestrel.Tcp.Tests.SeedScripts.Encoder;

    [Fact]
    public async Task SeedNcCommand_CreatesSn002_WithTemperatureAndHumidity()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, port) = await CreateSeedIntegrationAsync(rest, "TCP integration nc");

        // The seed's "multiple messages" command, with the integration's bound port.
        var (exit, output) = await RunShellAsync($"echo -e 'SN-002,default,temperature,25.7\\nSN-002,default,humidity,69' | nc -q1 -w1 127.0.0.1 {port}");
        Assert.True(exit == 0, $"nc exited {exit}: {output}");

        var deviceId = await WaitForDeviceAsync(rest, "SN-002");
        var latest = await WaitForTelemetryAsync(rest, deviceId, "temperature", "humidity");
        Assert.Equal(25.7, latest["temperature"]![0]!["value"]!.GetValue<double>());
        Assert.Equal(69, latest["humidity"]![0]!["value"]!.GetValue<double>());
        var device = await rest.GetAsync($"/api/device/{deviceId}");
        Assert.Equal("default", device["type"]!.GetValue<string>());

        var integration = await rest.GetAsync($"/api/integration/{id}");
        Assert.Equal(port, integration["configuration"]!["clientConfiguration"]!["port"]!.GetValue<int>());
    }

    [Fact]
    public async Task SharedAttributeSavedOverRest_ArrivesOnTheDevicesOpenConnection_AsTheEncoderOutputAndNewline()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (_, port) = await CreateSeedIntegrationAsync(rest, "TCP integration downlink");

        var known = await KnownSessionsAsync(rest, "SN-002");
        using var device = new TcpClient();
        await device.ConnectAsync(IPAddress.Loopback, port);
        var stream = device.GetStream();
        await stream.WriteAsync("SN-002,default,temperature,25.7\n"u8.ToArray());

        var deviceId = await WaitForDeviceAsync(rest, "SN-002");
        await WaitForNewSessionAsync(deviceId, known);

        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/SHARED_SCOPE", new { powerState = "on" });

        Assert.Equal("{\"powerState\":\"on\"}\n", await ReadLineAsync(stream));
    }

    [Fact]
    public async Task SeedSingleMessageCommand_WithQ0_IsDelivered()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (_, port) = await CreateSeedIntegrationAsync(rest, "TCP integration nc -q0");

        // nc -q0 closes right after sending: the bytes arrive together with the FIN.
        var (exit, output) = await RunShellAsync($"echo -e 'SN-Q0,default,temperature,25.7' | nc -q0 localhost {port}");
        Assert.True(exit == 0, $"nc exited {exit}: {output}");

        var latest = await WaitForTelemetryAsync(rest, await WaitForDeviceAsync(rest, "SN-Q0"), "temperature");
        Assert.Equal(25.7, latest["temperature"]![0]!["value"]!.GetValue<double>());
    }

    [Fact]
    public async Task SeedDownlinkFlow_WithARealNc_PrintsTheSharedAttribute()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (_, port) = await CreateSeedIntegrationAsync(rest, "TCP integration nc downlink");
        var known = await KnownSessionsAsync(rest, "SN-002");

        // The seed's "keep the connection open" command: nc prints what the server sends until -w60 expires.
        var start = new ProcessStartInfo("/bin/bash", ["-c", $"echo -e 'SN-002,default,temperature,25.7' | nc -w60 127.0.0.1 {port}"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var nc = Process.Start(start)!;
        try
        {
            var deviceId = await WaitForDeviceAsync(rest, "SN-002");
            await WaitForNewSessionAsync(deviceId, known);
            await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/SHARED_SCOPE", new { powerState = "on" });

            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var line = await nc.StandardOutput.ReadLineAsync(timeout.Token);
            Assert.Equal("{\"powerState\":\"on\"}", line);
        }
        finally
        {
            nc.Kill(entireProcessTree: true);
            await nc.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task ConverterError_IsListedInTheConvertersEvents()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var uplink = await rest.PostAsync("/api/converter", new
        {
            name = "Throwing decoder",
            type = "UPLINK",
            configuration = new { scriptLang = "JS", decoder = "throw new Error('cannot decode ' + decodeToString(payload));" },
        });
        var converterId = uplink["id"]!["id"]!.GetValue<string>();
        var integration = await rest.PostAsync("/api/integration", IntegrationBody("TCP integration errors", converterId, null));
        var port = integration["configuration"]!["clientConfiguration"]!["port"]!.GetValue<int>();

        using (var client = new TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, port);
            await client.GetStream().WriteAsync("garbage-frame\n"u8.ToArray());
        }

        JsonNode? error = null;
        await WaitUntilAsync(async () =>
        {
            var events = await rest.GetAsync($"/api/converter/{converterId}/events?pageSize=10&page=0");
            error = events["data"]!.AsArray().FirstOrDefault(e => e!["eventType"]!.GetValue<string>() == "Error");
            return error is not null;
        }, "an Error event of the converter");
        Assert.Contains("cannot decode garbage-frame", error!["body"]!["error"]!.GetValue<string>());
        Assert.Equal("garbage-frame", error["body"]!["in"]!.GetValue<string>());

        var same = await rest.GetAsync($"/api/events/CONVERTER/{converterId}/DEBUG_CONVERTER?pageSize=10&page=0");
        Assert.NotEmpty(same["data"]!.AsArray());
    }

    [Fact]
    public async Task ConverterWithABadScript_Answers400_AndIsNotSaved()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var before = (await rest.GetAsync("/api/converters?pageSize=1000&page=0"))["totalElements"]!.GetValue<int>();

        var response = await rest.Http.PostAsJsonAsync("/api/converter", new
        {
            name = "Broken",
            type = "UPLINK",
            configuration = new { scriptLang = "JS", decoder = "var x = ;" },
        });

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.Contains("converter", body!["message"]!.GetValue<string>(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(before, (await rest.GetAsync("/api/converters?pageSize=1000&page=0"))["totalElements"]!.GetValue<int>());
    }

    [Fact]
    public async Task TestUpLink_RunsTheSeedDecoder_OnASamplePayload()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var result = await rest.PostAsync("/api/converter/testUpLink?scriptLang=JS", new
        {
            metadata = new { },
            payload = Convert.ToBase64String("SN-002,default,temperature,25.7"u8),
            decoder = SeedDecoder,
        });

        Assert.Equal(string.Empty, result["error"]!.GetValue<string>());
        var output = JsonNode.Parse(result["output"]!.GetValue<string>())!;
        Assert.Equal("SN-002", output["deviceName"]!.GetValue<string>());
        Assert.Equal("default", output["deviceType"]!.GetValue<string>());
        Assert.Equal(25.7, output["telemetry"]!["temperature"]!.GetValue<double>());

        var failed = await rest.PostAsync("/api/converter/testUpLink", new { metadata = new { }, payload = "", decoder = "throw new Error('nope');" });
        Assert.Contains("nope", failed["error"]!.GetValue<string>());
    }

    [Fact]
    public async Task IntegrationOnATakenPort_Answers400_NamingThePort()
    {
        using var rest = await Rest.LoginAsync(fixture);
        using var holder = new TcpListener(IPAddress.Loopback, 0);
        holder.Start();
        var taken = ((IPEndPoint)holder.LocalEndpoint).Port;
        var uplink = await rest.PostAsync("/api/converter", new { name = "Seed uplink (taken port)", type = "UPLINK", configuration = new { scriptLang = "JS", decoder = SeedDecoder } });

        var response = await rest.Http.PostAsJsonAsync("/api/integration", IntegrationBody("On a taken port", uplink["id"]!["id"]!.GetValue<string>(), null, taken));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.Contains($"Port {taken}", body!["message"]!.GetValue<string>());
    }

    [Fact]
    public async Task DisabledIntegration_StopsListening_AndDeletedIntegration_IsGone()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, port) = await CreateSeedIntegrationAsync(rest, "TCP integration lifecycle");

        var disabled = await rest.PostAsync($"/api/integration/{id}/disable", new { });
        Assert.False(disabled["enabled"]!.GetValue<bool>());
        await Assert.ThrowsAnyAsync<SocketException>(async () =>
        {
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port);
        });

        var enabled = await rest.PostAsync($"/api/integration/{id}/enable", new { });
        var newPort = enabled["configuration"]!["clientConfiguration"]!["port"]!.GetValue<int>();
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, newPort);
        }

        // The GET answer posted back is an update: same entity, same port (the handler is swapped, not rebound).
        var current = (JsonObject)await rest.GetAsync($"/api/integration/{id}");
        current["name"] = "TCP integration lifecycle (renamed)";
        var updated = await rest.PostAsync("/api/integration", current);
        Assert.Equal(id, updated["id"]!["id"]!.GetValue<string>());
        Assert.Equal(newPort, updated["configuration"]!["clientConfiguration"]!["port"]!.GetValue<int>());

        var uplinkId = updated["defaultConverterId"]!["id"]!.GetValue<string>();
        Assert.Equal(HttpStatusCode.BadRequest, (await rest.Http.DeleteAsync($"/api/converter/{uplinkId}")).StatusCode);

        var list = await rest.GetAsync("/api/integrations?pageSize=100&page=0");
        Assert.Contains(list["data"]!.AsArray(), i => i!["id"]!["id"]!.GetValue<string>() == id);

        Assert.Equal(HttpStatusCode.OK, (await rest.Http.DeleteAsync($"/api/integration/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await rest.Http.GetAsync($"/api/integration/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await rest.Http.DeleteAsync($"/api/converter/{uplinkId}")).StatusCode);
    }

    [Fact]
    public async Task DefaultIntegrationFromConfiguration_CreatesTheDevice_WithTheBuiltInCsvConverter()
    {
        using var rest = await Rest.LoginAsync(fixture);
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(HostFixture.Loopback(fixture.Endpoints.TcpIntegration!));
            // Two messages of a new device in one read: published concurrently, the device is created once.
            await client.GetStream().WriteAsync("SN-DEFAULT,thermometer,temperature,21.5\nSN-DEFAULT,thermometer,humidity,40\n"u8.ToArray());
        }

        var deviceId = await WaitForDeviceAsync(rest, "SN-DEFAULT");
        var latest = await WaitForTelemetryAsync(rest, deviceId, "temperature", "humidity");
        Assert.Equal(40, latest["humidity"]![0]!["value"]!.GetValue<double>());
        Assert.Equal(21.5, latest["temperature"]![0]!["value"]!.GetValue<double>());
        Assert.Equal("thermometer", (await rest.GetAsync($"/api/device/{deviceId}"))["type"]!.GetValue<string>());

        // A line over maxFrameLength (128) closes its connection and is an event of the default integration.
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(HostFixture.Loopback(fixture.Endpoints.TcpIntegration!));
            await client.GetStream().WriteAsync(Encoding.ASCII.GetBytes(new string('x', 300)));
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            Assert.Equal(0, await client.GetStream().ReadAsync(new byte[16], timeout.Token));
        }

        await WaitUntilAsync(async () =>
            (await rest.GetAsync("/api/integration/default/events?pageSize=50&page=0"))["data"]!.AsArray()
                .Any(e => e!["eventType"]!.GetValue<string>() == "Error"), "a framing error event of the default integration");
    }

    [Fact]
    public async Task ConvertersAndIntegrations_SurviveARestart_AndListenAgain()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-e2e-tcp-" + Guid.NewGuid().ToString("N"));
        try
        {
            string id;
            await using (var first = new OwnedHost(dataDir))
            {
                await first.Fixture.InitializeAsync();
                using var rest = await Rest.LoginAsync(first.Fixture);
                (id, _) = await CreateSeedIntegrationAsync(rest, "TCP integration durable");
            }

            await using var second = new OwnedHost(dataDir);
            await second.Fixture.InitializeAsync();
            using var again = await Rest.LoginAsync(second.Fixture);
            var integration = await again.GetAsync($"/api/integration/{id}");
            Assert.True(integration["status"]!["listening"]!.GetValue<bool>(), integration.ToJsonString());
            var port = integration["configuration"]!["clientConfiguration"]!["port"]!.GetValue<int>();
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, port);
            await client.GetStream().WriteAsync("SN-RESTART,default,temperature,1\n"u8.ToArray());
            await WaitForDeviceAsync(again, "SN-RESTART");
        }
        finally
        {
            TestDirectories.Delete(dataDir);
        }
    }

    private sealed class OwnedHost(string dataDir) : IAsyncDisposable
    {
        public HostFixture Fixture { get; } = new(dataDir, ownsDataDir: false);

        public async ValueTask DisposeAsync() => await Fixture.DisposeAsync();
    }

    [Fact]
    public async Task DeletingATenant_StopsAndRemovesItsIntegrationsAndConverters_FreeingTheirPorts()
    {
        using var sys = await Rest.LoginAsync(fixture, "sysadmin@example.com", "sysadmin");
        var tenantId = (await sys.PostAsync("/api/tenant", new { title = "doomed-tcp-" + Guid.NewGuid().ToString("N")[..6] }))["id"]!["id"]!.GetValue<string>();
        var admin = $"doomed-tcp-{Guid.NewGuid():N}@example.com";
        await sys.PostAsync("/api/user", new { email = admin, authority = "TENANT_ADMIN", tenantId = new { entityType = "TENANT", id = tenantId }, password = "pw-123456" });
        int port;
        using (var doomed = await Rest.LoginAsync(fixture, admin, "pw-123456"))
        {
            (_, port) = await CreateSeedIntegrationAsync(doomed, "doomed integration");
        }

        using (var probe = new System.Net.Sockets.TcpClient())
        {
            await probe.ConnectAsync(System.Net.IPAddress.Loopback, port); // it listens
        }

        Assert.Equal(System.Net.HttpStatusCode.OK, (await sys.Http.DeleteAsync($"/api/tenant/{tenantId}")).StatusCode);

        // The listener closes: connecting is refused (the removal runs right after the delete's commit).
        await Eventually.TrueAsync(async () =>
        {
            using var client = new System.Net.Sockets.TcpClient();
            try
            {
                await client.ConnectAsync(System.Net.IPAddress.Loopback, port);
                return false;
            }
            catch (System.Net.Sockets.SocketException)
            {
                return true;
            }
        });
        await Eventually.TrueAsync(() => !Directory.GetFiles(Path.Combine(fixture.DataDir, "integrations"))
            .Any(f => File.Exists(f) && ReadOrEmpty(f).Contains(tenantId, StringComparison.Ordinal)));

        static string ReadOrEmpty(string path)
        {
            try
            {
                return File.ReadAllText(path);
            }
            catch (FileNotFoundException)
            {
                return string.Empty; // deleted meanwhile
            }
        }
    }

    /// <summary>The seed's converters and an integration on a free port (port 0); returns its id and bound port.</summary>
    private static async Task<(string Id, int Port)> CreateSeedIntegrationAsync(Rest rest, string name)
    {
        var uplink = await rest.PostAsync("/api/converter", new { name = "TCP Uplink Converter", type = "UPLINK", configuration = new { scriptLang = "JS", decoder = SeedDecoder } });
        Assert.Equal("CONVERTER", uplink["id"]!["entityType"]!.GetValue<string>());
        var downlink = await rest.PostAsync("/api/converter", new { name = "TCP Downlink Converter", type = "DOWNLINK", configuration = new { scriptLang = "JS", encoder = SeedEncoder } });
        var integration = await rest.PostAsync("/api/integration", IntegrationBody(name, uplink["id"]!["id"]!.GetValue<string>(), downlink["id"]!["id"]!.GetValue<string>()));
        Assert.Equal("INTEGRATION", integration["id"]!["entityType"]!.GetValue<string>());
        var port = integration["configuration"]!["clientConfiguration"]!["port"]!.GetValue<int>();
        Assert.NotEqual(0, port);
        return (integration["id"]!["id"]!.GetValue<string>(), port);
    }

    private static object IntegrationBody(string name, string uplinkId, string? downlinkId, int port = 0) => new
    {
        name,
        type = "TCP",
        enabled = true,
        allowCreateDevicesOrAssets = true,
        defaultConverterId = new { id = uplinkId },
        downlinkConverterId = downlinkId is null ? null : new { id = downlinkId },
        configuration = new
        {
            clientConfiguration = new
            {
                port,
                soBacklogOption = 128,
                soRcvBuf = 64,
                soSndBuf = 64,
                soKeepaliveOption = false,
                tcpNoDelay = true,
                handlerConfiguration = new
                {
                    handlerType = "TEXT",
                    maxFrameLength = 128,
                    stripDelimiter = true,
                    messageSeparator = "SYSTEM_LINE_SEPARATOR",
                    charsetName = "UTF-8",
                },
            },
            metadata = new { },
        },
    };

    /// <summary>Runs a command line as the seed's terminal does (bash: the seed's <c>echo -e</c> is bash's).</summary>
    private static async Task<(int Exit, string Output)> RunShellAsync(string command)
    {
        var start = new ProcessStartInfo("/bin/bash", ["-c", command])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout + await stderr);
    }

    /// <summary>SN-002 may already have a (parked) TCP session from another test: a downlink test waits for its own connection's.</summary>
    private async Task<HashSet<Core.IDeviceSession>> KnownSessionsAsync(Rest rest, string deviceName) =>
        fixture.Host.Engine.Registry.FindDeviceByName(await TenantIdAsync(rest), deviceName) is { } existing
            ? [.. fixture.Host.Engine.Sessions.GetSessions(existing.Id)]
            : [];

    private Task WaitForNewSessionAsync(string deviceId, HashSet<Core.IDeviceSession> known) =>
        WaitUntilAsync(
            () => fixture.Host.Engine.Sessions.GetSessions(Guid.Parse(deviceId)).Any(s => s.Transport == "TCP" && s.WantsAttributeUpdates && !known.Contains(s)),
            "the device's TCP session on the new connection");

    private static async Task<Guid> TenantIdAsync(Rest rest) =>
        Guid.Parse((await rest.GetAsync("/api/auth/user"))["tenantId"]!["id"]!.GetValue<string>());

    private static async Task<string> WaitForDeviceAsync(Rest rest, string name)
    {
        string? id = null;
        await WaitUntilAsync(async () =>
        {
            var response = await rest.Http.GetAsync($"/api/tenant/devices?deviceName={name}");
            if (!response.IsSuccessStatusCode)
            {
                return false;
            }

            id = (await response.Content.ReadFromJsonAsync<JsonObject>())!["id"]!["id"]!.GetValue<string>();
            return true;
        }, $"device {name}");
        return id!;
    }

    private static async Task<JsonNode> WaitForTelemetryAsync(Rest rest, string deviceId, params string[] keys)
    {
        JsonNode? latest = null;
        await WaitUntilAsync(async () =>
        {
            latest = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys={string.Join(',', keys)}&useStrictDataTypes=true");
            return keys.All(k => latest[k] is JsonArray { Count: > 0 });
        }, $"telemetry {string.Join(',', keys)}");
        return latest!;
    }

    private static Task WaitUntilAsync(Func<bool> condition, string what) => WaitUntilAsync(() => Task.FromResult(condition()), what);

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(15), $"timed out waiting for {what}");
            await Task.Delay(50);
        }
    }

    private static async Task<string> ReadLineAsync(NetworkStream stream)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var received = new List<byte>();
        var buffer = new byte[256];
        while (!received.Contains((byte)'\n'))
        {
            var read = await stream.ReadAsync(buffer, timeout.Token);
            Assert.True(read > 0, $"connection closed after {Encoding.UTF8.GetString([.. received])}");
            received.AddRange(buffer.AsSpan(0, read));
        }

        return Encoding.UTF8.GetString([.. received]);
    }
}
