using Microsoft.Extensions.DependencyInjection;

namespace Perf.EndToEnd;

/// <summary>MQTT_TRANSPORT=lean (opt-in): the MQTT endpoint, and only it, is bound by the lean transport, and a device works through it.</summary>
public sealed class LeanTransportTests : IAsyncLifetime
{
    private readonly HostFixtureWithSettings _host = new(new() { ["MQTT_TRANSPORT"] = "lean" });

    public Task InitializeAsync() => _host.InitializeAsync();

    public Task DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task LeanTransport_BindsTheMqttEndpoint_AndCarriesTelemetry()
    {
        var fixture = _host.Fixture;
        Assert.True(fixture.Host.Settings.MqttLeanTransport);
        var lean = fixture.Host.Services.GetRequiredService<Perf.Kestrel.Mqtt.LeanSocketTransportFactory>();
        Assert.Equal(1, lean.BoundCount);

        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("lean-device");
        await using (var device = await MqttDevice.ConnectAsync(fixture, token))
        {
            for (int i = 1; i <= 20; i++)
            {
                await device.PublishAsync("v1/devices/me/telemetry", $$"""{"lean":{{i}}}""");
            }
        }

        Assert.Equal("20", (await rest.LatestTimeseriesAsync(id, "lean"))["lean"].Value);
    }
}
