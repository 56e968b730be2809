using Microsoft.Extensions.DependencyInjection;

namespace Perf.EndToEnd;

/// <summary>MQTT_TRANSPORT=kestrel (the alternative to the default lean transport): the MQTT endpoint is on Kestrel's transport and a device works through it.</summary>
public sealed class KestrelTransportTests : IAsyncLifetime
{
    private readonly HostFixtureWithSettings _host = new(new() { ["MQTT_TRANSPORT"] = "kestrel" });

    public Task InitializeAsync() => _host.InitializeAsync();

    public Task DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task KestrelTransport_CarriesTelemetry()
    {
        var fixture = _host.Fixture;
        Assert.False(fixture.Host.Settings.MqttLeanTransport);
        Assert.Null(fixture.Host.Services.GetService<Perf.Kestrel.Mqtt.LeanSocketTransportFactory>());

        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("kestrel-transport-device");
        await using (var device = await MqttDevice.ConnectAsync(fixture, token))
        {
            for (int i = 1; i <= 20; i++)
            {
                await device.PublishAsync("v1/devices/me/telemetry", $$"""{"kt":{{i}}}""");
            }
        }

        Assert.Equal("20", (await rest.LatestTimeseriesAsync(id, "kt"))["kt"].Value);
    }
}
