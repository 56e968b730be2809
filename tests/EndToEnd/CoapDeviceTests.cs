using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Perf.Core;

namespace Perf.EndToEnd;

/// <summary>The CoAP door against the real host, driven by Debian's libcoap <c>coap-client-notls</c>.</summary>
[Collection(HostCollection.Name)]
public sealed class CoapDeviceTests(HostFixture fixture)
{
    private const string CoapClient = "coap-client-notls";

    private string Uri(string token, string resource) => $"coap://127.0.0.1:{fixture.Endpoints.Coap!.Port}/api/v1/{token}/{resource}";

    private static ProcessStartInfo Start(params string[] args) => Start(lineBuffered: false, args);

    /// <summary>
    /// coap-client writes payloads with stdio, fully buffered into a pipe; an observer's notifications are only
    /// seen as they arrive when stdout is unbuffered (<c>stdbuf -o0</c>, coreutils).
    /// </summary>
    private static ProcessStartInfo Start(bool lineBuffered, params string[] args)
    {
        var info = new ProcessStartInfo(lineBuffered ? "stdbuf" : CoapClient) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (lineBuffered)
        {
            info.ArgumentList.Add("-o0");
            info.ArgumentList.Add(CoapClient);
        }

        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        return info;
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(params string[] args)
    {
        Process process;
        try
        {
            process = Process.Start(Start(args))!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            Assert.Fail($"{CoapClient} is not installed: apt-get install -y libcoap3-bin");
            throw;
        }

        using (process)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var output = process.StandardOutput.ReadToEndAsync(cts.Token);
            var error = process.StandardError.ReadToEndAsync(cts.Token);
            await process.WaitForExitAsync(cts.Token);
            return (process.ExitCode, await output + await error);
        }
    }

    [Fact]
    public async Task PostTelemetry_WithCoapClient_IsReadBackOverRest()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("coap-telemetry");
        var (exit, output) = await RunAsync("-m", "post", "-t", "json", "-e", "{\"temperature\":25}", Uri(device.Token, "telemetry"));
        Assert.True(exit == 0, output);
        Assert.Equal("25", await rest.LatestAsync(device.Id, "temperature"));
    }

    [Fact]
    public async Task ObservingLargeSharedAttributes_WithCoapClient_GivesOneWholeJsonDocument()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("coap-observe-big");
        var big = new string('x', 5000);
        await rest.SaveSharedAsync(device.Id, "{\"note\":\"" + big + "\",\"mode\":\"eco\"}");
        (await rest.Http.PostAsync($"/api/v1/{device.Token}/attributes", new StringContent("{\"model\":\"X1\"}"))).EnsureSuccessStatusCode();

        // -s 1: observe for a second; libcoap fetches the blocks after the first with GETs of its own (RFC 7959 §3.4).
        var (exit, output) = await RunAsync("-m", "get", "-s", "1", Uri(device.Token, "attributes"));
        Assert.True(exit == 0, output);
        var json = System.Text.Json.Nodes.JsonNode.Parse(output.Trim())!.AsObject();
        Assert.Equal(big, json["note"]!.GetValue<string>());
        Assert.Equal("eco", json["mode"]!.GetValue<string>());
        Assert.False(json.ContainsKey("client"), output[..Math.Min(200, output.Length)]);
    }

    [Fact]
    public async Task BadToken_Is401_AndBadJson_Is400()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("coap-errors");
        var (_, unauthorized) = await RunAsync("-m", "post", "-e", "{\"t\":1}", Uri("no-such-token", "telemetry"));
        Assert.Contains("4.01", unauthorized);
        var (_, bad) = await RunAsync("-m", "post", "-e", "{\"t\":", Uri(device.Token, "telemetry"));
        Assert.Contains("4.00", bad);
    }

    [Fact]
    public async Task GetAttributes_ReturnsClientAndSharedValues()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("coap-attrs");
        var (exit, posted) = await RunAsync("-m", "post", "-e", "{\"model\":\"C3\"}", Uri(device.Token, "attributes"));
        Assert.True(exit == 0, posted);
        await rest.SaveSharedAsync(device.Id, "{\"period\":5}");
        var (_, output) = await RunAsync("-m", "get", Uri(device.Token, "attributes") + "?clientKeys=model&sharedKeys=period");
        Assert.Contains("{\"client\":{\"model\":\"C3\"},\"shared\":{\"period\":5}}", output);
    }

    [Fact]
    public async Task LargeTelemetry_IsUploadedBlockWise_WithBlock1()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("coap-block1");
        var json = "{" + string.Join(",", Enumerable.Range(0, 40).Select(i => $"\"sensor{i}\":{i * 10}")) + "}";
        var file = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(file, json);
            var (exit, output) = await RunAsync("-m", "post", "-b", "64", "-f", file, Uri(device.Token, "telemetry"));
            Assert.True(exit == 0, output);
        }
        finally
        {
            File.Delete(file);
        }

        Assert.Equal("390", await rest.LatestAsync(device.Id, "sensor39"));
        Assert.Equal("0", await rest.LatestAsync(device.Id, "sensor0"));
    }

    [Fact]
    public async Task Firmware_IsDownloadedBlockWise_ByteForByte()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("coap-fw");
        var package = Enumerable.Range(0, 20_000).Select(i => (byte)((i * 7) ^ (i >> 8))).ToArray();
        var title = "fw-" + Guid.NewGuid().ToString("N")[..6];
        var created = await fixture.Host.Engine.Registry.CreateOtaPackageAsync(device.TenantId, title, "2.1", package);
        Assert.True(created.IsOk, created.Error);
        (await rest.Http.PostAsync($"/api/device/{device.Id}/firmware/{created.Value!.Id}", null)).EnsureSuccessStatusCode();

        var file = Path.Combine(Path.GetTempPath(), "coap-fw-" + Guid.NewGuid().ToString("N"));
        try
        {
            var (exit, output) = await RunAsync("-m", "get", "-b", "512", "-o", file, Uri(device.Token, "firmware") + $"?title={title}&version=2.1");
            Assert.True(exit == 0, output);
            Assert.Equal(package, await File.ReadAllBytesAsync(file));
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task ObserveAttributes_ReceivesASharedAttributeSavedOverRest()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("coap-observe-attr");
        using var observer = new ObservingClient(Start(lineBuffered: true, "-m", "get", "-s", "15", Uri(device.Token, "attributes")));
        await DeviceApiWait.UntilAsync(() => fixture.Host.Engine.Sessions.GetSessions(device.Id).Any(s => s.Transport == "COAP" && s.WantsAttributeUpdates),
            "the observation to register");
        await rest.SaveSharedAsync(device.Id, "{\"fwVersion\":\"2.0\"}");
        await observer.WaitForAsync("\"fwVersion\":\"2.0\"");
    }

    [Fact]
    public async Task ObserveRpc_ReceivesAServerRpc_AndThePostedReplyCompletesTheCaller()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("coap-observe-rpc");
        using var observer = new ObservingClient(Start(lineBuffered: true, "-m", "get", "-s", "15", Uri(device.Token, "rpc")));
        await DeviceApiWait.UntilAsync(() => fixture.Host.Engine.Sessions.GetSessions(device.Id).Any(s => s.Transport == "COAP" && s.WantsRpc),
            "the RPC observation to register");
        var call = fixture.Host.Engine.Rpc.SendAsync(device.Id, "setValve", "{\"open\":true}", oneWay: false, timeoutMs: 20000, CancellationToken.None);

        await observer.WaitForAsync("\"method\":\"setValve\"");
        var json = observer.Text;
        var request = JsonNode.Parse(json[json.IndexOf("{\"id\"", StringComparison.Ordinal)..(json.IndexOf("}}", StringComparison.Ordinal) + 2)])!;
        var id = request["id"]!.GetValue<int>();
        Assert.True(request["params"]!["open"]!.GetValue<bool>());

        var (exit, output) = await RunAsync("-m", "post", "-e", "{\"open\":true}", Uri(device.Token, $"rpc/{id}"));
        Assert.True(exit == 0, output);
        var outcome = await call;
        Assert.Equal(RpcStatus.Success, outcome.Status);
        Assert.Equal("{\"open\":true}", outcome.ResponseJson);
    }

    [Fact]
    public async Task ClientSideRpc_ReturnsTheReply()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("coap-client-rpc");
        var (exit, output) = await RunAsync("-m", "post", "-e", "{\"method\":\"getCurrentTime\",\"params\":{}}", Uri(device.Token, "rpc"));
        Assert.True(exit == 0, output);
        Assert.Contains("currentTime", output);
    }

    [Fact]
    public async Task GarbageFlood_DoesNotStopTheServer_FromAnsweringAWellBehavedClient()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("coap-flood");
        using (var udp = new UdpClient())
        {
            udp.Connect(HostFixture.Loopback(fixture.Endpoints.Coap!));
            var random = new Random(42);
            var garbage = new byte[1500];
            for (var i = 0; i < 20_000; i++)
            {
                var length = random.Next(0, garbage.Length);
                random.NextBytes(garbage.AsSpan(0, length));
                if (length > 0 && i % 2 == 0)
                {
                    garbage[0] = (byte)(0x40 | (garbage[0] & 0x3F)); // half of them pass the version check
                }

                await udp.SendAsync(garbage.AsMemory(0, length));
            }
        }

        var (exit, output) = await RunAsync("-m", "post", "-e", "{\"afterFlood\":1}", Uri(device.Token, "telemetry"));
        Assert.True(exit == 0, output);
        Assert.Equal("1", await rest.LatestAsync(device.Id, "afterFlood"));
    }

    /// <summary>A long-running <c>coap-client -s</c> whose output lines are collected as they arrive.</summary>
    private sealed class ObservingClient : IDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();

        public ObservingClient(ProcessStartInfo info)
        {
            _process = Process.Start(info)!;
            // Payloads are printed without a trailing newline, so read characters, not lines.
            _ = PumpAsync(_process.StandardOutput);
            _ = PumpAsync(_process.StandardError);
        }

        private async Task PumpAsync(StreamReader reader)
        {
            var buffer = new char[4096];
            int read;
            while ((read = await reader.ReadAsync(buffer)) > 0)
            {
                lock (_output)
                {
                    _output.Append(buffer, 0, read);
                }
            }
        }

        public string Text => Output;

        private string Output
        {
            get
            {
                lock (_output)
                {
                    return _output.ToString();
                }
            }
        }

        public async Task<string> WaitForAsync(string text)
        {
            var clock = Stopwatch.StartNew();
            while (clock.ElapsedMilliseconds < 10_000)
            {
                var output = Output;
                var at = output.IndexOf(text, StringComparison.Ordinal);
                if (at >= 0)
                {
                    // The JSON object holding the text: from the '{' before it to the matching '}' after.
                    var start = output.LastIndexOf('{', at);
                    var end = output.IndexOf('}', at);
                    if (start >= 0 && end > at)
                    {
                        return output[start..(end + 1)];
                    }
                }

                await Task.Delay(20);
            }

            Assert.Fail($"coap-client never printed {text}; output:\n{Output}");
            return string.Empty;
        }

        public void Dispose()
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }

            _process.Dispose();
        }
    }
}
