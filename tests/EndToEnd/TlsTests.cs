using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using MQTTnet;
using MQTTnet.Protocol;

namespace Perf.EndToEnd;

/// <summary>
/// A host with MQTT over TLS (PEM certificate, encrypted key) and HTTPS (PFX key store) next to the plain doors, and
/// the test PKI whose files it was started with.
/// </summary>
public sealed class TlsHostFixture : IAsyncLifetime
{
    internal TestPki Pki { get; } = new();

    public HostFixture Host { get; } = new();

    public int MqttTlsPort => Host.Endpoints.MqttTls!.Port;

    public int HttpsPort => Host.Endpoints.Https!.Port;

    public async Task InitializeAsync()
    {
        var settings = HostFixture.FreePortSettings(Host.DataDir);
        settings["MQTT_SSL_ENABLED"] = "true";
        settings["MQTT_SSL_BIND_PORT"] = "0";
        settings["MQTT_SSL_CREDENTIALS_TYPE"] = "PEM";
        settings["MQTT_SSL_PEM_CERT"] = Pki.ServerPem;
        settings["MQTT_SSL_PEM_KEY"] = Pki.ServerEncryptedKeyPem;
        settings["MQTT_SSL_PEM_KEY_PASSWORD"] = TestPki.KeyPassword;
        settings["SSL_ENABLED"] = "true";
        settings["HTTPS_BIND_PORT"] = "0";
        settings["SSL_CREDENTIALS_TYPE"] = "KEYSTORE";
        settings["SSL_KEY_STORE"] = Pki.ServerPfx;
        settings["SSL_KEY_STORE_PASSWORD"] = TestPki.PfxPassword;
        await Host.StartWithAsync(settings);
    }

    public async Task DisposeAsync()
    {
        await Host.DisposeAsync();
        Pki.Dispose();
    }
}

/// <summary>MQTT over TLS with mosquitto_pub and MQTTnet, X.509 device credentials, and HTTPS with HttpClient.</summary>
public sealed class TlsTests(TlsHostFixture fixture) : IClassFixture<TlsHostFixture>
{
    private TestPki Pki => fixture.Pki;

    [Fact]
    public async Task MosquittoPub_WithCaFileAndToken_PublishesTelemetry_ReadableOverRest()
    {
        Assert.True(MosquittoShell.Available, "mosquitto-clients is not installed (apt-get install -y mosquitto-clients)");
        using var rest = await TenantRest.LoginAsync(fixture.Host);
        var (id, token, _) = await rest.CreateDeviceAsync("tls-token");

        var (exit, output) = await Mosquitto.PubAsync(Pki.Dir, "--cafile", Pki.CaPem, "-h", "127.0.0.1", "-p", Port(), "-u", token,
            "-t", "v1/devices/me/telemetry", "-m", """{"temperature":21.5}""", "-q", "1", "-d");

        Assert.True(exit == 0, $"mosquitto_pub exit {exit}: {output}");
        Assert.Contains("received CONNACK (0)", output, StringComparison.Ordinal);
        Assert.Contains("received PUBACK", output, StringComparison.Ordinal);
        Assert.Equal("21.5", (await rest.LatestTimeseriesAsync(id, "temperature"))["temperature"].Value);
    }

    [Fact]
    public async Task MosquittoPub_TrustingAnotherCa_FailsTheHandshake_AndTheDoorKeepsServing()
    {
        using var rest = await TenantRest.LoginAsync(fixture.Host);
        var (id, token, _) = await rest.CreateDeviceAsync("tls-wrong-ca");

        var (exit, output) = await Mosquitto.PubAsync(Pki.Dir, "--cafile", Pki.OtherCaPem, "-h", "127.0.0.1", "-p", Port(), "-u", token,
            "-t", "v1/devices/me/telemetry", "-m", """{"wrongCa":1}""", "-q", "1");

        Assert.NotEqual(0, exit);
        Assert.Contains("TLS error", output, StringComparison.OrdinalIgnoreCase);
        Assert.False((await rest.LatestTimeseriesAsync(id, "wrongCa")).ContainsKey("wrongCa"));

        var (again, againOutput) = await Mosquitto.PubAsync(Pki.Dir, "--cafile", Pki.CaPem, "-h", "127.0.0.1", "-p", Port(), "-u", token,
            "-t", "v1/devices/me/telemetry", "-m", """{"rightCa":1}""", "-q", "1");
        Assert.True(again == 0, againOutput);
        Assert.Equal("1", (await rest.LatestTimeseriesAsync(id, "rightCa"))["rightCa"].Value);
    }

    [Fact]
    public async Task MosquittoPub_WithRegisteredDeviceCertificate_PublishesToThatDevice_AndAnUnknownCertificateIsRefused()
    {
        using var rest = await TenantRest.LoginAsync(fixture.Host);
        var (certDeviceId, _, _) = await rest.CreateDeviceAsync("tls-x509");
        var (otherId, _, _) = await rest.CreateDeviceAsync("tls-x509-other");
        var device = Pki.CreateDevice("sensor-" + Guid.NewGuid().ToString("N")[..6]);
        var other = Pki.CreateDevice("other-" + Guid.NewGuid().ToString("N")[..6]);
        var stranger = Pki.CreateDevice("stranger-" + Guid.NewGuid().ToString("N")[..6]);

        var saved = await SaveX509Async(rest, certDeviceId, device.Pem);
        await SaveX509Async(rest, otherId, other.Pem);

        // The reference's shape: the id is the SHA3-256 of the base64 DER, the value that base64 without armour.
        Assert.Equal("X509_CERTIFICATE", saved["credentialsType"]!.GetValue<string>());
        Assert.Equal(TestPki.ReferenceCredentialsId(device.Certificate), saved["credentialsId"]!.GetValue<string>());
        Assert.Equal(Convert.ToBase64String(device.Certificate.RawData), saved["credentialsValue"]!.GetValue<string>());
        var read = await rest.Http.GetFromJsonAsync<JsonObject>($"/api/device/{certDeviceId}/credentials");
        Assert.Equal(saved["credentialsId"]!.GetValue<string>(), read!["credentialsId"]!.GetValue<string>());

        // No username: the certificate is the credential.
        var (exit, output) = await Mosquitto.PubAsync(Pki.Dir, "--cafile", Pki.CaPem, "--cert", device.CertPath, "--key", device.KeyPath,
            "-h", "127.0.0.1", "-p", Port(), "-t", "v1/devices/me/telemetry", "-m", """{"byCertificate":7}""", "-q", "1");
        Assert.True(exit == 0, $"mosquitto_pub exit {exit}: {output}");
        Assert.Equal("7", (await rest.LatestTimeseriesAsync(certDeviceId, "byCertificate"))["byCertificate"].Value);
        Assert.False((await rest.LatestTimeseriesAsync(otherId, "byCertificate")).ContainsKey("byCertificate"));

        var (refused, refusedOutput) = await Mosquitto.PubAsync(Pki.Dir, "--cafile", Pki.CaPem, "--cert", stranger.CertPath, "--key", stranger.KeyPath,
            "-h", "127.0.0.1", "-p", Port(), "-t", "v1/devices/me/telemetry", "-m", """{"byStranger":1}""", "-q", "1");
        Assert.NotEqual(0, refused);
        Assert.Contains("not authorised", refusedOutput, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task MqttNet_OverTls_ConnectsWithAToken_AndWithAClientCertificate()
    {
        using var rest = await TenantRest.LoginAsync(fixture.Host);
        var (tokenDeviceId, token, _) = await rest.CreateDeviceAsync("tls-mqttnet-token");
        var (certDeviceId, _, _) = await rest.CreateDeviceAsync("tls-mqttnet-cert");
        var certificate = Pki.CreateDevice("mqttnet-" + Guid.NewGuid().ToString("N")[..6]);
        await SaveX509Async(rest, certDeviceId, certificate.Pem);

        using (var client = new MqttClientFactory().CreateMqttClient())
        {
            var connected = await client.ConnectAsync(TlsOptions(token, null));
            Assert.Equal(MqttClientConnectResultCode.Success, connected.ResultCode);
            await PublishAsync(client, """{"viaToken":1}""");
            await client.DisconnectAsync();
        }

        using (var client = new MqttClientFactory().CreateMqttClient())
        {
            // A username that is no token is ignored once a certificate is presented (the reference checks the certificate first).
            var connected = await client.ConnectAsync(TlsOptions("ignored", certificate.Certificate));
            Assert.Equal(MqttClientConnectResultCode.Success, connected.ResultCode);
            await PublishAsync(client, """{"viaCertificate":2}""");
            await client.DisconnectAsync();
        }

        Assert.Equal("1", (await rest.LatestTimeseriesAsync(tokenDeviceId, "viaToken"))["viaToken"].Value);
        Assert.Equal("2", (await rest.LatestTimeseriesAsync(certDeviceId, "viaCertificate"))["viaCertificate"].Value);
    }

    [Fact]
    public async Task HttpClient_OverHttps_LogsIn_AndUsesTheRestAndDeviceApis_OnHttp2()
    {
        using var https = Pki.CreateHttpsClient(fixture.HttpsPort);
        https.DefaultRequestVersion = HttpVersion.Version20;
        https.DefaultVersionPolicy = HttpVersionPolicy.RequestVersionOrLower;

        var login = await https.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = "tenant" });
        Assert.Equal(HttpStatusCode.OK, login.StatusCode);
        Assert.Equal(HttpVersion.Version20, login.Version);
        var jwt = (await login.Content.ReadFromJsonAsync<JsonObject>())!["token"]!.GetValue<string>();
        https.DefaultRequestHeaders.Add("X-Authorization", "Bearer " + jwt);

        var created = await https.PostAsJsonAsync("/api/device", new { name = "tls-https-" + Guid.NewGuid().ToString("N")[..6], type = "default" });
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        var id = (await created.Content.ReadFromJsonAsync<JsonObject>())!["id"]!["id"]!.GetValue<string>();
        var token = (await https.GetFromJsonAsync<JsonObject>($"/api/device/{id}/credentials"))!["credentialsId"]!.GetValue<string>();

        using var body = new StringContent("""{"overHttps":3}""", Encoding.UTF8, "application/json");
        var posted = await https.PostAsync($"/api/v1/{token}/telemetry", body);
        Assert.Equal(HttpStatusCode.OK, posted.StatusCode);

        var latest = await https.GetFromJsonAsync<JsonObject>($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=overHttps");
        Assert.Equal("3", latest!["overHttps"]![0]!["value"]!.GetValue<string>());

        // Plain HTTP is still served on its own port.
        using var plain = fixture.Host.CreateHttpClient();
        Assert.Equal(HttpStatusCode.OK, (await plain.GetAsync("/health")).StatusCode);
    }

    [Fact]
    public async Task HttpsClient_NotTrustingTheServer_CannotConnect()
    {
        using var otherCa = X509CertificateLoader.LoadCertificateFromFile(Pki.OtherCaPem);
        using var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) => TestPki.ChainsTo(otherCa, certificate, errors);
        using var client = new HttpClient(handler) { BaseAddress = new Uri($"https://localhost:{fixture.HttpsPort}") };

        await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync("/health"));

        using var trusted = Pki.CreateHttpsClient(fixture.HttpsPort);
        Assert.Equal(HttpStatusCode.OK, (await trusted.GetAsync("/health")).StatusCode);
    }

    [Fact]
    public async Task PlainTextMqttClient_OnTheTlsPort_IsClosed_AndTheDoorKeepsServing()
    {
        using var rest = await TenantRest.LoginAsync(fixture.Host);
        var (id, token, _) = await rest.CreateDeviceAsync("tls-plaintext");
        using (var socket = new TcpClient())
        {
            await socket.ConnectAsync(IPAddress.Loopback, fixture.MqttTlsPort);
            var stream = socket.GetStream();
            await stream.WriteAsync(MqttConnect(token));

            // The server drops the connection: EOF or a reset, never a CONNACK.
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var buffer = new byte[64];
            int read;
            try
            {
                read = await stream.ReadAsync(buffer, cts.Token);
                while (read > 0 && buffer[0] == 0x15)
                {
                    // A TLS alert record may come first; what follows is the close.
                    read = await stream.ReadAsync(buffer, cts.Token);
                }
            }
            catch (IOException)
            {
                read = 0;
            }

            Assert.Equal(0, read);
        }

        using var client = new MqttClientFactory().CreateMqttClient();
        Assert.Equal(MqttClientConnectResultCode.Success, (await client.ConnectAsync(TlsOptions(token, null))).ResultCode);
        await PublishAsync(client, """{"afterPlainText":1}""");
        Assert.Equal("1", (await rest.LatestTimeseriesAsync(id, "afterPlainText"))["afterPlainText"].Value);
    }

    [Fact]
    public async Task X509Credentials_AreValidated_Unique_NotAnAccessToken_AndReplacedByAToken()
    {
        using var rest = await TenantRest.LoginAsync(fixture.Host);
        var (first, _, _) = await rest.CreateDeviceAsync("tls-x509-rules");
        var (second, _, _) = await rest.CreateDeviceAsync("tls-x509-rules-2");
        var certificate = Pki.CreateDevice("rules-" + Guid.NewGuid().ToString("N")[..6]);
        var another = Pki.CreateDevice("rules2-" + Guid.NewGuid().ToString("N")[..6]);

        Assert.Equal(HttpStatusCode.BadRequest, (await PostCredentialsAsync(rest, first, "X509_CERTIFICATE", "not a certificate")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await PostCredentialsAsync(rest, first, "X509_CERTIFICATE", certificate.Pem + another.Pem)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await PostCredentialsAsync(rest, first, "X509_CERTIFICATE", null)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await PostCredentialsAsync(rest, first, "MQTT_BASIC", "x")).StatusCode);

        var saved = await SaveX509Async(rest, first, certificate.Pem);
        var certificateId = saved["credentialsId"]!.GetValue<string>();

        // Bare base64 (what the reference answers) is accepted too; one certificate belongs to one device only.
        var duplicate = await PostCredentialsAsync(rest, second, "X509_CERTIFICATE", Convert.ToBase64String(certificate.Certificate.RawData));
        Assert.Equal(HttpStatusCode.BadRequest, duplicate.StatusCode);
        Assert.Contains("another device", await duplicate.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // The id is derived from a public certificate: it must not work as an access token, nor be taken as one.
        using (var plain = new MqttClientFactory().CreateMqttClient())
        {
            var refused = await plain.ConnectAsync(MqttDevice.Options(fixture.Host, certificateId));
            Assert.Equal(MqttClientConnectResultCode.NotAuthorized, refused.ResultCode);
        }

        Assert.Equal(HttpStatusCode.BadRequest, (await PostCredentialsAsync(rest, second, "ACCESS_TOKEN", null, certificateId)).StatusCode);

        // Back to an access token: the certificate no longer authenticates anyone.
        var token = "tok-" + Guid.NewGuid().ToString("N")[..12];
        Assert.Equal(HttpStatusCode.OK, (await PostCredentialsAsync(rest, first, "ACCESS_TOKEN", null, token)).StatusCode);
        using (var client = new MqttClientFactory().CreateMqttClient())
        {
            Assert.Equal(MqttClientConnectResultCode.NotAuthorized, (await client.ConnectAsync(TlsOptions(null, certificate.Certificate))).ResultCode);
        }

        using (var client = new MqttClientFactory().CreateMqttClient())
        {
            Assert.Equal(MqttClientConnectResultCode.Success, (await client.ConnectAsync(TlsOptions(token, null))).ResultCode);
        }

        // Now free, the certificate can go to the second device.
        Assert.Equal(HttpStatusCode.OK, (await PostCredentialsAsync(rest, second, "X509_CERTIFICATE", certificate.Pem)).StatusCode);
    }

    private string Port() => fixture.MqttTlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private MqttClientOptions TlsOptions(string? token, X509Certificate2? clientCertificate) => TlsClient.Options(fixture.MqttTlsPort, Pki.Ca, token, clientCertificate);

    private static async Task PublishAsync(IMqttClient client, string json)
    {
        var result = await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("v1/devices/me/telemetry").WithPayload(json)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.True(result.IsSuccess, result.ReasonCode.ToString());
    }

    internal static async Task<JsonObject> SaveX509Async(TenantRest rest, Guid deviceId, string pem)
    {
        var response = await PostCredentialsAsync(rest, deviceId, "X509_CERTIFICATE", pem);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, text);
        return JsonNode.Parse(text)!.AsObject();
    }

    private static Task<HttpResponseMessage> PostCredentialsAsync(TenantRest rest, Guid deviceId, string type, string? value, string? id = null) =>
        rest.Http.PostAsJsonAsync("/api/device/credentials", new
        {
            deviceId = new { entityType = "DEVICE", id = deviceId },
            credentialsType = type,
            credentialsId = id,
            credentialsValue = value,
        });

    /// <summary>An MQTT 3.1.1 CONNECT with <paramref name="token"/> as the username, as a plain-text client sends it.</summary>
    internal static byte[] MqttConnect(string token)
    {
        var user = Encoding.UTF8.GetBytes(token);
        var body = new List<byte> { 0, 4, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 4, 0x82, 0, 60, 0, 1, (byte)'c', 0, (byte)user.Length };
        body.AddRange(user);
        return [0x10, (byte)body.Count, .. body];
    }
}

/// <summary>MQTTnet options for the TLS door: trust only the test CA, optionally present a client certificate.</summary>
internal static class TlsClient
{
    public static MqttClientOptions Options(int port, X509Certificate2 ca, string? token, X509Certificate2? clientCertificate) =>
        new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", port)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V311)
            .WithCredentials(token, (string?)null)
            .WithClientId("tls-" + Guid.NewGuid().ToString("N")[..8])
            .WithTimeout(TimeSpan.FromSeconds(15))
            .WithTlsOptions(tls =>
            {
                tls.UseTls()
                    .WithCertificateValidationHandler(e => TestPki.ChainsTo(ca, e.Certificate, e.SslPolicyErrors));
                if (clientCertificate is not null)
                {
                    tls.WithClientCertificates(new X509Certificate2Collection(clientCertificate));
                }
            })
            .Build();
}

/// <summary>Runs mosquitto_pub with an argument list (no shell) and an empty options directory.</summary>
internal static class Mosquitto
{
    public static async Task<(int ExitCode, string Output)> PubAsync(string workDir, params string[] arguments)
    {
        var psi = new ProcessStartInfo("mosquitto_pub", arguments)
        {
            WorkingDirectory = workDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.Environment["XDG_CONFIG_HOME"] = workDir;
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"mosquitto_pub {string.Join(' ', arguments)} did not finish: {await stdout} {await stderr}");
        }

        return (process.ExitCode, await stdout + await stderr);
    }
}
