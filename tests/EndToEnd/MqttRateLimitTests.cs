using System.Text;
using MQTTnet;
using MQTTnet.Protocol;

namespace Perf.EndToEnd;

/// <summary>Rate limits need their own host: the shared fixture runs without limits.</summary>
public sealed class MqttRateLimitTests : IAsyncLifetime
{
    private readonly HostFixtureWithSettings _fixture = new(new()
    {
        ["Mqtt:DeviceMessagesRateLimit"] = "5:60",
        ["Mqtt:TenantMessagesRateLimit"] = "8:60",
    });

    public Task InitializeAsync() => _fixture.InitializeAsync();

    public Task DisposeAsync() => _fixture.DisposeAsync();

    [Fact]
    public async Task DeviceAndTenantLimits_CloseTheConnectionWithoutPubAck_AndGetSessionLimitsReportsThem()
    {
        var fixture = _fixture.Fixture;
        using var rest = await TenantRest.LoginAsync(fixture);
        var (_, tokenA, _) = await rest.CreateDeviceAsync("limited-a");
        var (_, tokenB, _) = await rest.CreateDeviceAsync("limited-b");

        // Device A: getSessionLimits (1 message) + 4 telemetry = its 5; the 6th is refused.
        await using var a = await MqttDevice.ConnectAsync(fixture, tokenA, "v1/devices/me/rpc/response/+");
        await a.PublishAsync("v1/devices/me/rpc/request/1", """{"method":"getSessionLimits","params":{}}""");
        var limits = await a.ReceiveJsonAsync("v1/devices/me/rpc/response/1");
        Assert.Equal("5:60", limits["rateLimits"]!["messages"]!.GetValue<string>());
        for (int i = 0; i < 4; i++)
        {
            await a.PublishAsync("v1/devices/me/telemetry", $$"""{"n":{{i}}}""");
        }

        await AssertRefusedAsync(a);

        // Device B has its own 5 but the tenant has only 3 left of 8.
        await using var b = await MqttDevice.ConnectAsync(fixture, tokenB);
        for (int i = 0; i < 3; i++)
        {
            await b.PublishAsync("v1/devices/me/telemetry", $$"""{"n":{{i}}}""");
        }

        await AssertRefusedAsync(b);
    }

    private static async Task AssertRefusedAsync(MqttDevice device)
    {
        var disconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        device.Client.DisconnectedAsync += _ =>
        {
            disconnected.TrySetResult();
            return Task.CompletedTask;
        };
        var publish = device.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("v1/devices/me/telemetry")
            .WithPayload(Encoding.UTF8.GetBytes("""{"over":1}""")).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await Assert.ThrowsAnyAsync<Exception>(() => publish);
    }
}

/// <summary>A <see cref="HostFixture"/>-like host with extra settings, for tests that must not share the default host.</summary>
internal sealed class HostFixtureWithSettings(Dictionary<string, string?> settings)
{
    public HostFixture Fixture { get; } = new();

    public async Task InitializeAsync()
    {
        var all = HostFixture.FreePortSettings(Fixture.DataDir);
        foreach (var (key, value) in settings)
        {
            all[key] = value;
        }

        await Fixture.StartWithAsync(all);
    }

    public Task DisposeAsync() => Fixture.DisposeAsync();
}
