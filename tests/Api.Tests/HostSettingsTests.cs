using Microsoft.Extensions.Configuration;
using Perf.Api.Hosting;
using Perf.Core;

namespace Perf.Api.Tests;

/// <summary>
/// Settings are read strictly: a flag takes the forms operators write (true/1/yes/on and their opposites) and
/// refuses anything else with the variable's name, two doors on one port are refused before binding, and a bind
/// failure names the door and its setting.
/// </summary>
public sealed class HostSettingsTests
{
    [Theory]
    [InlineData("false", false)]
    [InlineData("0", false)]
    [InlineData("no", false)]
    [InlineData("OFF", false)]
    [InlineData("true", true)]
    [InlineData("1", true)]
    [InlineData("Yes", true)]
    [InlineData("on", true)]
    [InlineData("", true)]
    public void DoorFlags_TakeTheUsualForms(string value, bool enabled)
    {
        var settings = HostSettings.From(Configuration(("MQTT_ENABLED", value), ("COAP_ENABLED", value)));
        Assert.Equal(enabled, settings.MqttEnabled);
        Assert.Equal(enabled, settings.CoapEnabled);
    }

    [Theory]
    [InlineData("MQTT_ENABLED", "nope")]
    [InlineData("EDGES_ENABLED", "2")]
    [InlineData("PERF_DIAGNOSTICS", "enabled")]
    [InlineData("MQTT_SSL_ENABLED", "y")]
    [InlineData("SHUTDOWN_GRACE_SECONDS", "soon")]
    [InlineData("SHUTDOWN_GRACE_SECONDS", "-1")]
    [InlineData("HTTP_BIND_PORT", "65536")]
    public void BadValues_StopTheStart_NamingTheSettingAndTheValue(string name, string value)
    {
        var e = Assert.Throws<InvalidOperationException>(() => HostSettings.From(Configuration((name, value))));
        Assert.Contains($"{name} '{value}'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CoreLimitAndEdgeSettings_RefuseWhatDoesNotParse_AndKeepDefaultsWhenAbsent()
    {
        var defaults = CoreSettings.From(Configuration(), "data");
        Assert.True(defaults.FsyncOnCommit);
        Assert.False(CoreSettings.From(Configuration(("FSYNC_ON_COMMIT", "0")), "data").FsyncOnCommit);
        Assert.Equal(7, CoreSettings.From(Configuration(("COMMIT_INTERVAL_MS", "7")), "data").CommitIntervalMs);
        Assert.Equal(LogDamagePolicy.Stop, defaults.OnLogDamage);
        Assert.Equal(LogDamagePolicy.KeepBefore, CoreSettings.From(Configuration(("LOG_DAMAGE", "keep-before")), "data").OnLogDamage);
        foreach (var (name, value) in new[] { ("FSYNC_ON_COMMIT", "sometimes"), ("COMMIT_INTERVAL_MS", "2ms"), ("CHECKPOINT_LOG_BYTES", "0"), ("RPC_TTL_MS", "1d"), ("LOG_DAMAGE", "ignore") })
        {
            var e = Assert.Throws<InvalidOperationException>(() => CoreSettings.From(Configuration((name, value)), "data"));
            Assert.Contains($"{name} '{value}'", e.Message, StringComparison.Ordinal);
        }

        Assert.False(LimitSettings.From(Configuration(("LIMITS_EXEMPT_LOOPBACK", "off"))).Guard.ExemptLoopback);
        Assert.Throws<InvalidOperationException>(() => LimitSettings.From(Configuration(("MQTT_MAX_CONNECTIONS", "many"))));
        Assert.Equal(3, Perf.Api.Edge.EdgeOptions.From(Configuration()).DownlinkAttempts);
        Assert.Throws<InvalidOperationException>(() => Perf.Api.Edge.EdgeOptions.From(Configuration(("EDGES_DOWNLINK_ATTEMPTS", "three"))));
    }

    [Fact]
    public void TwoDoorsOnOnePort_AreRefused_NamingBothSettings_UnlessOneIsOff()
    {
        var e = Assert.Throws<InvalidOperationException>(() => HostSettings.From(Configuration(("MQTT_BIND_PORT", "8080"))));
        Assert.Equal("HTTP_BIND_PORT and MQTT_BIND_PORT are both 8080: the http and mqtt doors need a port each", e.Message);

        Assert.Equal(8080, HostSettings.From(Configuration(("MQTT_BIND_PORT", "8080"), ("MQTT_ENABLED", "false"))).MqttPort);
        // Port 0 is a free port each: never a clash.
        HostSettings.From(Configuration(("HTTP_BIND_PORT", "0"), ("MQTT_BIND_PORT", "0"), ("TCP_INTEGRATION_PORT", "0"), ("EDGES_RPC_PORT", "0")));
        // MQTT over TLS on its own address may share the number with a door on another address.
        HostSettings.From(Configuration(("BIND_ADDRESS", "127.0.0.1"), ("MQTT_SSL_ENABLED", "true"), ("MQTT_SSL_BIND_ADDRESS", "127.0.0.2"), ("MQTT_SSL_BIND_PORT", "1883")));
    }

    [Fact]
    public void ABindFailure_IsPrefixedWithTheDoorAndItsSetting()
    {
        var settings = HostSettings.From(Configuration(("MQTT_BIND_PORT", "1883"), ("COAP_BIND_PORT", "1883")));
        Assert.Equal(
            "Door mqtt (MQTT_BIND_PORT=1883) could not listen: Failed to bind to address http://0.0.0.0:1883: address already in use.",
            settings.NameTheDoor("Failed to bind to address http://0.0.0.0:1883: address already in use."));
        // UDP and TCP ports are separate: the same number names the CoAP door for a udp:// address.
        Assert.Equal(
            "Door coap (COAP_BIND_PORT=1883) could not listen: Failed to bind to address udp://0.0.0.0:1883: Address already in use.",
            settings.NameTheDoor("Failed to bind to address udp://0.0.0.0:1883: Address already in use."));
        const string Other = "Failed to bind to address http://0.0.0.0:9999: address already in use.";
        Assert.Same(Other, settings.NameTheDoor(Other));
    }

    private static IConfiguration Configuration(params (string Name, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Name, v.Value))).Build();
}
