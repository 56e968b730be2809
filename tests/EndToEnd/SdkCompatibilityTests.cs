using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Perf.EndToEnd;

/// <summary>
/// What the reference's SDKs (tb-rest-client for Python and Java) call and read around devices: the default device
/// profile, device infos and types, devices by ids, a device created with its credentials in one call.
/// </summary>
[Collection(HostCollection.Name)]
public sealed class SdkCompatibilityTests(HostFixture fixture)
{
    private static string Unique(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..8];

    [Fact]
    public async Task EveryDevice_HasTheTenantsDefaultProfile_WhichTheProfileEndpointsServe()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var info = await rest.GetAsync("/api/deviceProfileInfo/default");
        var profileId = info["id"]!["id"]!.GetValue<string>();
        Assert.Equal(("DEVICE_PROFILE", "default", "DEFAULT", "DEFAULT"),
            (info["id"]!["entityType"]!.GetValue<string>(), info["name"]!.GetValue<string>(), info["type"]!.GetValue<string>(), info["transportType"]!.GetValue<string>()));
        Assert.Equal(profileId, (await rest.GetAsync("/api/deviceProfileInfo/default"))["id"]!["id"]!.GetValue<string>()); // stable

        // The SDKs' create: look the default profile up, send it with the device, read it back.
        var device = await rest.PostAsync("/api/device", new { name = Unique("sdk"), type = "sensor", deviceProfileId = new { entityType = "DEVICE_PROFILE", id = profileId } });
        Assert.Equal(profileId, device["deviceProfileId"]!["id"]!.GetValue<string>());
        Assert.Equal("DEFAULT", device["deviceData"]!["configuration"]!["type"]!.GetValue<string>());
        var profile = await rest.GetAsync($"/api/deviceProfile/{profileId}");
        Assert.True(profile["default"]!.GetValue<bool>());
        Assert.Equal(profileId, (await rest.GetAsync("/api/deviceProfileInfos?pageSize=10&page=0"))["data"]![0]!["id"]!["id"]!.GetValue<string>());
        Assert.Single((await rest.GetAsync("/api/deviceProfiles?pageSize=10&page=0"))["data"]!.AsArray());
        Assert.Equal(HttpStatusCode.NotFound, (await rest.Http.GetAsync($"/api/deviceProfile/{Guid.NewGuid()}")).StatusCode);
        var unknownProfile = await rest.Http.PostAsJsonAsync("/api/device", new { name = Unique("sdk"), deviceProfileId = new { entityType = "DEVICE_PROFILE", id = Guid.NewGuid() } });
        Assert.Equal(HttpStatusCode.BadRequest, unknownProfile.StatusCode);

        // Another tenant's default profile is another id.
        using var sys = await Rest.LoginAsync(fixture, "sysadmin@example.com", "sysadmin");
        var tenantId = (await sys.PostAsync("/api/tenant", new { title = Unique("t") }))["id"]!["id"]!.GetValue<string>();
        var admin = Unique("a") + "@example.com";
        await sys.PostAsync("/api/user", new { email = admin, authority = "TENANT_ADMIN", tenantId = new { entityType = "TENANT", id = tenantId }, password = "pw-123456" });
        using var other = await Rest.LoginAsync(fixture, admin, "pw-123456");
        Assert.NotEqual(profileId, (await other.GetAsync("/api/deviceProfileInfo/default"))["id"]!["id"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.NotFound, (await other.Http.GetAsync($"/api/deviceProfile/{profileId}")).StatusCode);
    }

    [Fact]
    public async Task DeviceInfosTypesAndDevicesByIds_AnswerAsTheReference()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var type = Unique("type");
        var label = Unique("label");
        var a = await rest.PostAsync("/api/device", new { name = Unique("info-a"), type, label });
        var b = await rest.PostAsync("/api/device", new { name = Unique("info-b"), type });
        var aId = a["id"]!["id"]!.GetValue<string>();
        var bId = b["id"]!["id"]!.GetValue<string>();
        var customer = await rest.PostAsync("/api/customer", new { title = Unique("c") });
        var customerId = customer["id"]!["id"]!.GetValue<string>();
        await rest.PostAsync($"/api/customer/{customerId}/device/{aId}", new { });

        var info = await rest.GetAsync($"/api/device/info/{aId}");
        Assert.Equal((customer["title"]!.GetValue<string>(), "default", false),
            (info["customerTitle"]!.GetValue<string>(), info["deviceProfileName"]!.GetValue<string>(), info["active"]!.GetValue<bool>()));

        // textSearch matches the label too, as the reference's DeviceRepository.
        var infos = await rest.GetAsync($"/api/tenant/deviceInfos?pageSize=10&page=0&textSearch={label}");
        Assert.Equal(aId, Assert.Single(infos["data"]!.AsArray())!["id"]!["id"]!.GetValue<string>());
        Assert.Single((await rest.GetAsync($"/api/customer/{customerId}/deviceInfos?pageSize=10&page=0"))["data"]!.AsArray());

        Assert.Contains((await rest.GetAsync("/api/device/types")).AsArray(), t => t!["type"]!.GetValue<string>() == type);
        var byIds = (await rest.GetAsync($"/api/devices?deviceIds={aId},{bId},{Guid.NewGuid()}")).AsArray();
        Assert.Equal(new[] { aId, bId }.Order(), byIds.Select(d => d!["id"]!["id"]!.GetValue<string>()).Order());
        Assert.Equal(HttpStatusCode.BadRequest, (await rest.Http.GetAsync("/api/devices?deviceIds=nope")).StatusCode);
    }

    [Fact]
    public async Task DeviceWithCredentials_CreatesBoth_AndAnUpdateKeepsTheCredentialsWhateverAccessTokenSays()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var clientId = Unique("client");
        var created = await rest.PostAsync("/api/device-with-credentials", new
        {
            device = new { name = Unique("with-creds"), type = "default" },
            credentials = new { credentialsType = "MQTT_BASIC", credentialsValue = new { clientId, userName = "u", password = "p" } },
        });
        var id = created["id"]!["id"]!.GetValue<string>();
        var credentials = await rest.GetAsync($"/api/device/{id}/credentials");
        Assert.Equal("MQTT_BASIC", credentials["credentialsType"]!.GetValue<string>());

        // The reference's saveDeviceWithAccessToken: accessToken is for a new device only.
        created["label"] = "relabelled";
        var updated = await rest.Http.PostAsJsonAsync("/api/device?accessToken=replaced", created);
        Assert.Equal(HttpStatusCode.OK, updated.StatusCode);
        Assert.Equal("MQTT_BASIC", (await rest.GetAsync($"/api/device/{id}/credentials"))["credentialsType"]!.GetValue<string>());
        Assert.Equal("relabelled", (await rest.GetAsync($"/api/device/{id}"))["label"]!.GetValue<string>());

        var token = Unique("tok");
        var withToken = await rest.PostAsync("/api/device-with-credentials", new
        {
            device = new { name = Unique("with-token") },
            credentials = new { credentialsType = "ACCESS_TOKEN", credentialsId = token },
        });
        Assert.Equal(token, (await rest.GetAsync($"/api/device/{withToken["id"]!["id"]!.GetValue<string>()}/credentials"))["credentialsId"]!.GetValue<string>());

        // Bad credentials leave no device behind.
        var name = Unique("bad-creds");
        var bad = await rest.Http.PostAsJsonAsync("/api/device-with-credentials", new { device = new { name }, credentials = new { credentialsType = "X509_CERTIFICATE", credentialsValue = "not a certificate" } });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await rest.Http.GetAsync($"/api/tenant/devices?deviceName={name}")).StatusCode);
    }

    [Fact]
    public async Task LegacyDeviceAttributeRoutes_SaveAndDelete_AsTheSdksCallThem()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("legacy-attr"));
        await rest.PostAsync($"/api/plugins/telemetry/{id}/SHARED_SCOPE", new { mode = "eco", level = 3 });
        var shared = (await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SHARED_SCOPE")).AsArray();
        Assert.Equal(["level", "mode"], shared.Select(a => a!["key"]!.GetValue<string>()).Order());

        Assert.Equal(HttpStatusCode.OK, (await rest.Http.DeleteAsync($"/api/plugins/telemetry/{id}/SHARED_SCOPE?keys=mode")).StatusCode);
        Assert.Equal("level", Assert.Single((await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SHARED_SCOPE")).AsArray())!["key"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.NotFound, (await rest.Http.PostAsJsonAsync($"/api/plugins/telemetry/{Guid.NewGuid()}/SHARED_SCOPE", new { x = 1 })).StatusCode);
    }
}
