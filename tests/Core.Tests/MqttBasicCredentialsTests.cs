using System.Text;

namespace Perf.Core.Tests;

/// <summary>
/// MQTT basic credentials (the reference's MQTT_BASIC): the reference's credentials id, its lookup order and checks
/// on CONNECT, and the credentials surviving a checkpoint, a replay and a change of credentials type.
/// </summary>
public sealed class MqttBasicCredentialsTests
{
    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public async Task ClientIdUserNameAndPassword_AuthenticateTheirDevice_UnderTheReferenceId_AndSurviveCheckpointAndReplay()
    {
        using var dir = new TempDir();
        Guid deviceA, deviceB;
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            var (tenant, device, token) = await Engines.CreateDeviceAsync(engine, "a");
            deviceA = device.Id;
            var saved = await engine.Registry.UpdateMqttBasicAsync(deviceA, "{\"clientId\":\"c1\",\"userName\":\"u1\",\"password\":\"p1\"}");
            Assert.True(saved.IsOk, saved.Error);
            // printf 'c1|u1' | openssl dgst -sha3-256
            Assert.Equal("95e1382dda9250cb60f0993b19536f67cadb9285dc5dcf00504ab010b8cdf8a8", saved.Value!.CredentialsId);
            Assert.Equal(EntityRegistry.MqttBasic, engine.Registry.GetCredentials(deviceA)!.CredentialsType);
            Assert.Null(engine.DeviceApi.Authenticate(token)); // the token stopped working

            Assert.Equal(deviceA, engine.DeviceApi.AuthenticateMqttBasic("c1", Utf8("u1"), Utf8("p1"))?.Id);
            Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("c1", Utf8("u1"), Utf8("wrong")));
            Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("c1", Utf8("u1"), default));
            Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("c2", Utf8("u1"), Utf8("p1")));
            Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("c1", default, Utf8("p1")));

            await engine.CheckpointAsync();
            var second = await engine.Registry.CreateDeviceAsync(tenant, "b");
            deviceB = second.Value!.Id;
            // A user name alone: any client id, no password.
            Assert.True((await engine.Registry.UpdateMqttBasicAsync(deviceB, "{\"userName\":\"only-user\"}")).IsOk);
            // printf 'only-user' | openssl dgst -sha3-256
            Assert.Equal("36d7fb7b31d84182eb1cbdbc168608178564558e378779f662f924d8091ec9fa", engine.Registry.GetCredentials(deviceB)!.CredentialsId);
            Assert.Equal(RegistryStatus.Conflict, (await engine.Registry.UpdateMqttBasicAsync(deviceB, "{\"clientId\":\"c1\",\"userName\":\"u1\"}")).Status);
        }

        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            Assert.Equal(deviceA, engine.DeviceApi.AuthenticateMqttBasic("c1", Utf8("u1"), Utf8("p1"))?.Id);
            Assert.Equal(deviceB, engine.DeviceApi.AuthenticateMqttBasic("any-client", Utf8("only-user"), default)?.Id);
            Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("any-client", Utf8("u1"), Utf8("p1")));

            Assert.True((await engine.Registry.UpdateAccessTokenAsync(deviceB, "b-token")).IsOk);
            Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("any-client", Utf8("only-user"), default));
            Assert.True((await engine.Registry.DeleteDeviceAsync(deviceA)).IsOk);
            Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("c1", Utf8("u1"), Utf8("p1")));
            await engine.CheckpointAsync();
        }

        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("c1", Utf8("u1"), Utf8("p1")));
            Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("any-client", Utf8("only-user"), default));
            Assert.Equal(deviceB, engine.DeviceApi.Authenticate("b-token")?.Id);
        }
    }

    [Fact]
    public async Task AClientIdAlone_AuthenticatesAConnectWithoutAUserName_AndAnotherCredentialsTypeReplacesIt()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        Assert.True((await engine.Registry.UpdateMqttBasicAsync(device.Id, "{\"clientId\":\"sensor-7\",\"userName\":\"\",\"password\":\"\"}")).IsOk);
        Assert.Equal("{\"clientId\":\"sensor-7\"}", engine.Registry.GetCredentials(device.Id)!.CredentialsValue);
        Assert.Equal(device.Id, engine.DeviceApi.AuthenticateMqttBasic("sensor-7", default, default)?.Id);
        Assert.Equal(device.Id, engine.DeviceApi.AuthenticateMqttBasic("sensor-7", Utf8(""), default)?.Id);
        Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("sensor-8", default, default));

        Assert.True((await engine.Registry.UpdateAccessTokenAsync(device.Id, "t-7")).IsOk);
        Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("sensor-7", default, default));
        Assert.Equal(EntityRegistry.AccessToken, engine.Registry.GetCredentials(device.Id)!.CredentialsType);
    }

    [Fact]
    public async Task WithNoBasicCredentials_AWrongUserName_IsRefusedWithoutAllocating()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        await Engines.CreateDeviceAsync(engine);
        var userName = Utf8("not-a-token");
        var password = Utf8("secret");
        Assert.Null(engine.DeviceApi.AuthenticateMqttBasic("client", userName, password)); // warm up

        var before = GC.GetAllocatedBytesForCurrentThread();
        var device = engine.DeviceApi.AuthenticateMqttBasic("client", userName, password);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Null(device);
        Assert.Equal(0, allocated);
    }

    [Fact]
    public async Task TheBasicCredentialsId_NeverWorksAsAnAccessToken()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        Assert.True((await engine.Registry.UpdateMqttBasicAsync(device.Id, "{\"clientId\":\"c9\"}")).IsOk);
        Assert.Equal(device.Id, engine.DeviceApi.AuthenticateMqttBasic("c9", default, default)?.Id);
        Assert.Null(engine.DeviceApi.Authenticate(engine.Registry.GetCredentials(device.Id)!.CredentialsId));
    }

    [Theory]
    [InlineData(null, "required")]
    [InlineData("not json", "not JSON")]
    [InlineData("{}", "Both mqtt client id and user name are empty!")]
    [InlineData("{\"clientId\":\"c\",\"password\":\"p\"}", "Password cannot be specified along with client id only")]
    public async Task InvalidValues_AreRefused_WithTheReason(string? value, string reason)
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, token) = await Engines.CreateDeviceAsync(engine);
        var result = await engine.Registry.UpdateMqttBasicAsync(device.Id, value);
        Assert.Equal(RegistryStatus.Invalid, result.Status);
        Assert.Contains(reason, result.Error, StringComparison.Ordinal);
        Assert.Equal(device.Id, engine.DeviceApi.Authenticate(token)?.Id); // unchanged
    }
}
