using Microsoft.Extensions.DependencyInjection;
using System.Net.Http.Json;
using System.Net.Sockets;

namespace Perf.EndToEnd;

[Collection(HostCollection.Name)]
public sealed class DoorsTests(HostFixture fixture)
{
    [Fact]
    public async Task Health_AnswersUp_AndReady_AnswersReady()
    {
        using var http = fixture.CreateHttpClient();
        var health = await http.GetAsync("/health");
        Assert.Equal(System.Net.HttpStatusCode.OK, health.StatusCode);
        var ready = await http.GetFromJsonAsync<Dictionary<string, string>>("/ready");
        Assert.Equal("READY", ready!["status"]);
    }

    [Fact]
    public async Task EveryTcpDoor_AcceptsAConnection()
    {
        var endpoints = fixture.Endpoints;
        foreach (var endPoint in new[] { endpoints.Http, endpoints.Mqtt, endpoints.TcpIntegration, endpoints.Edges })
        {
            Assert.NotNull(endPoint);
            using var client = new TcpClient();
            await client.ConnectAsync(HostFixture.Loopback(endPoint));
            Assert.True(client.Connected, $"door at {endPoint} refused the connection");
        }
    }

    [Fact]
    public async Task CoapDoor_AnswersAPingWithReset()
    {
        using var udp = new UdpClient();
        udp.Connect(HostFixture.Loopback(fixture.Endpoints.Coap!));
        // RFC 7252 §4.3: empty CON (ver 1, type 0, tkl 0, code 0.00, message id 0x1234) -> RST with the same id.
        await udp.SendAsync(new byte[] { 0x40, 0x00, 0x12, 0x34 });
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var reply = await udp.ReceiveAsync(cts.Token);
        Assert.Equal(new byte[] { 0x70, 0x00, 0x12, 0x34 }, reply.Buffer);
    }

    [Fact]
    public async Task TcpIntegrationDoor_ClosesTheConnection_WhenAFrameExceedsTheLimit()
    {
        using var client = new TcpClient();
        await client.ConnectAsync(HostFixture.Loopback(fixture.Endpoints.TcpIntegration!));
        var stream = client.GetStream();
        await stream.WriteAsync(new byte[4096]);
        var buffer = new byte[16];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var read = await stream.ReadAsync(buffer, cts.Token);
        Assert.Equal(0, read); // EOF: the server closed the connection.
    }

    [Fact]
    public void MqttDoor_IsServedByTheLeanTransport_ByDefault()
    {
        // MQTT_TRANSPORT unset: the MQTT endpoint is bound by the lean transport (and only it: HTTP, gRPC and
        // the TCP door stay on Kestrel's socket transport, which EveryTcpDoor_AcceptsAConnection exercises).
        Assert.True(fixture.Host.Settings.MqttLeanTransport);
        var lean = fixture.Host.Services.GetRequiredService<Perf.Kestrel.Mqtt.LeanSocketTransportFactory>();
        Assert.Equal(1, lean.BoundCount);
    }
}
