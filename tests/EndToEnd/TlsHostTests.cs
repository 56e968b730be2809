using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using MQTTnet;
using MQTTnet.Protocol;

namespace Perf.EndToEnd;

/// <summary>TLS cases that need a host of their own: a restart on the same data, and the host's log as a child process.</summary>
public sealed class TlsHostTests
{
    [Fact]
    public async Task X509Credentials_SurviveRestart_FromTheCheckpointAndFromTheLog_WithAKeyStoreForMqttAndPemForHttps()
    {
        using var pki = new TestPki();
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-e2e-tls-" + Guid.NewGuid().ToString("N"));
        var settings = HostFixture.FreePortSettings(dataDir);
        settings["MQTT_SSL_ENABLED"] = "true";
        settings["MQTT_SSL_BIND_PORT"] = "0";
        settings["MQTT_SSL_CREDENTIALS_TYPE"] = "KEYSTORE";
        settings["MQTT_SSL_KEY_STORE"] = pki.ServerPfx;
        settings["MQTT_SSL_KEY_STORE_PASSWORD"] = TestPki.PfxPassword;
        settings["SSL_ENABLED"] = "true";
        settings["HTTPS_BIND_PORT"] = "0";
        settings["SSL_PEM_CERT"] = pki.ServerPem;
        settings["SSL_PEM_KEY"] = pki.ServerKeyPem;
        var checkpointed = pki.CreateDevice("checkpointed");
        var logged = pki.CreateDevice("logged");
        Guid checkpointedId, loggedId;
        string checkpointedCredentialsId;
        try
        {
            var first = new HostFixture(dataDir, ownsDataDir: false);
            try
            {
                await first.StartWithAsync(settings);
                using var rest = await TenantRest.LoginAsync(pki.CreateHttpsClient(first.Endpoints.Https!.Port));
                (checkpointedId, _, _) = await rest.CreateDeviceAsync("x509-restart-a");
                (loggedId, _, _) = await rest.CreateDeviceAsync("x509-restart-b");
                checkpointedCredentialsId = (await TlsTests.SaveX509Async(rest, checkpointedId, checkpointed.Pem))["credentialsId"]!.GetValue<string>();
                await first.Host.Engine.CheckpointAsync();
                await TlsTests.SaveX509Async(rest, loggedId, logged.Pem);
            }
            finally
            {
                await first.DisposeAsync();
            }

            var second = new HostFixture(dataDir, ownsDataDir: false);
            try
            {
                await second.StartWithAsync(settings);
                foreach (var (certificate, key) in new[] { (checkpointed, "fromCheckpoint"), (logged, "fromLog") })
                {
                    using var client = new MqttClientFactory().CreateMqttClient();
                    var connected = await client.ConnectAsync(TlsClient.Options(second.Endpoints.MqttTls!.Port, pki.Ca, null, certificate.Certificate));
                    Assert.Equal(MqttClientConnectResultCode.Success, connected.ResultCode);
                    var published = await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("v1/devices/me/telemetry")
                        .WithPayload($$"""{"{{key}}":1}""").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
                    Assert.True(published.IsSuccess);
                }

                using var rest = await TenantRest.LoginAsync(pki.CreateHttpsClient(second.Endpoints.Https!.Port));
                Assert.True((await rest.LatestTimeseriesAsync(checkpointedId, "fromCheckpoint")).ContainsKey("fromCheckpoint"));
                Assert.True((await rest.LatestTimeseriesAsync(loggedId, "fromLog")).ContainsKey("fromLog"));
                var credentials = await rest.Http.GetFromJsonAsync<JsonObject>($"/api/device/{checkpointedId}/credentials");
                Assert.Equal("X509_CERTIFICATE", credentials!["credentialsType"]!.GetValue<string>());
                Assert.Equal(checkpointedCredentialsId, credentials["credentialsId"]!.GetValue<string>());
            }
            finally
            {
                await second.DisposeAsync();
            }
        }
        finally
        {
            TestDirectories.Delete(dataDir);
        }
    }

    [Fact]
    public async Task FailedHandshakes_AreEachLoggedOnce_WithTheRemoteAddressAndReason_AndTheDoorKeepsServing()
    {
        using var pki = new TestPki();
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-e2e-tlslog-" + Guid.NewGuid().ToString("N"));
        var expired = pki.CreateDevice("expired", DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(-1));
        try
        {
            using var host = HostProcess.Start(new Dictionary<string, string?>
            {
                ["BIND_ADDRESS"] = "127.0.0.1",
                ["HTTP_BIND_PORT"] = "0",
                ["MQTT_BIND_PORT"] = "0",
                ["COAP_ENABLED"] = "false",
                ["TCP_INTEGRATION_ENABLED"] = "false",
                ["EDGES_ENABLED"] = "false",
                ["DATA_DIR"] = dataDir,
                ["MQTT_SSL_ENABLED"] = "true",
                ["MQTT_SSL_BIND_PORT"] = "0",
                ["MQTT_SSL_PEM_CERT"] = pki.ServerPem,
                ["MQTT_SSL_PEM_KEY"] = pki.ServerKeyPem,
                ["TLS_HANDSHAKE_TIMEOUT_SECONDS"] = "2",
            });
            var ports = await host.WaitForDoorsAsync(3, TimeSpan.FromSeconds(60));
            var tlsPort = ports["mqtt-tls"].ToString(System.Globalization.CultureInfo.InvariantCulture);
            using var rest = await TenantRest.LoginAsync(new Uri($"http://127.0.0.1:{ports["http"]}"));
            var (id, token, _) = await rest.CreateDeviceAsync("tls-log");

            // 1. The client does not trust the server's CA.
            var (wrongCa, wrongCaOutput) = await Mosquitto.PubAsync(pki.Dir, "--cafile", pki.OtherCaPem, "-h", "127.0.0.1", "-p", tlsPort,
                "-u", token, "-t", "v1/devices/me/telemetry", "-m", "{}");
            Assert.True(wrongCa != 0, wrongCaOutput);

            // 2. An expired client certificate (refused at the TLS level: MQTT_SSL_SKIP_VALIDITY_CHECK_FOR_CLIENT_CERT is off).
            var (expiredExit, expiredOutput) = await Mosquitto.PubAsync(pki.Dir, "--cafile", pki.CaPem, "--cert", expired.CertPath, "--key", expired.KeyPath,
                "-h", "127.0.0.1", "-p", tlsPort, "-t", "v1/devices/me/telemetry", "-m", "{}");
            Assert.True(expiredExit != 0, expiredOutput);

            // 3. Plain-text MQTT on the TLS port. 4. A connection that never says anything (closed at the handshake timeout).
            var plainPort = await ClosedByServerAsync(ports["mqtt-tls"], TlsTests.MqttConnect(token));
            var silentPort = await ClosedByServerAsync(ports["mqtt-tls"], null);

            await Eventually.TrueAsync(() => HandshakeLines(host).Count >= 4, 30_000);
            var (ok, okOutput) = await Mosquitto.PubAsync(pki.Dir, "--cafile", pki.CaPem, "-h", "127.0.0.1", "-p", tlsPort, "-u", token,
                "-t", "v1/devices/me/telemetry", "-m", """{"stillServing":1}""", "-q", "1");
            Assert.True(ok == 0, okOutput);
            Assert.Equal("1", (await rest.LatestTimeseriesAsync(id, "stillServing"))["stillServing"].Value);

            var lines = HandshakeLines(host);
            Assert.True(lines.Count == 4, string.Join('\n', lines));
            Assert.All(lines, l => Assert.Contains("Door mqtt-tls TLS handshake with 127.0.0.1:", l, StringComparison.Ordinal));
            var all = string.Join('\n', lines);
            // The client's "unknown ca" alert is usually read; on a loaded machine its reset can overtake it.
            Assert.True(lines.Count(l => l.Contains("UnknownCA", StringComparison.OrdinalIgnoreCase) || l.Contains("unknown ca", StringComparison.OrdinalIgnoreCase)
                || l.Contains("reset by peer", StringComparison.OrdinalIgnoreCase)) == 1, all);
            Assert.True(lines.Count(l => l.Contains("expired on", StringComparison.Ordinal) && l.Contains("CN=expired", StringComparison.Ordinal)) == 1, all);
            Assert.True(lines.Count(l => l.Contains($"127.0.0.1:{plainPort} failed", StringComparison.Ordinal)) == 1, all);
            Assert.True(lines.Count(l => l.Contains($"127.0.0.1:{silentPort} failed: no complete handshake within the timeout", StringComparison.Ordinal)) == 1, all);
            Assert.DoesNotContain(token, host.Output, StringComparison.Ordinal);
        }
        finally
        {
            TestDirectories.Delete(dataDir);
        }
    }

    private static List<string> HandshakeLines(HostProcess host) =>
        [.. host.Output.Split('\n').Where(l => l.Contains("TLS handshake with", StringComparison.Ordinal))];

    /// <summary>Connects, sends <paramref name="bytes"/> (or nothing) and waits for the server to close; returns the local port.</summary>
    private static async Task<int> ClosedByServerAsync(int port, byte[]? bytes)
    {
        using var socket = new TcpClient();
        await socket.ConnectAsync(IPAddress.Loopback, port);
        var localPort = ((IPEndPoint)socket.Client.LocalEndPoint!).Port;
        var stream = socket.GetStream();
        if (bytes is not null)
        {
            await stream.WriteAsync(bytes);
        }

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var buffer = new byte[256];
        try
        {
            while (await stream.ReadAsync(buffer, cts.Token) > 0)
            {
                // A TLS alert may come before the close.
            }
        }
        catch (IOException)
        {
            // Reset: closed as well.
        }

        return localPort;
    }
}
