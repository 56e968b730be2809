using System.Security.Cryptography;
using System.Text;
using Perf.Core.Domain;

namespace Perf.Core.Tests;

public class RegistryTests
{
    [Fact]
    public async Task CreateDevice_GeneratesTwentyCharToken_ResolvableFromUtf8Bytes()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, token) = await Engines.CreateDeviceAsync(engine);
        Assert.Equal(20, token.Length);
        Assert.True(token.All(char.IsAsciiLetterOrDigit));
        Assert.Equal("default", device.Type);
        Assert.Equal(device.Id, engine.DeviceApi.Authenticate(Encoding.UTF8.GetBytes(token))?.Id);
        Assert.Null(engine.DeviceApi.Authenticate("nope"u8));
        Assert.Null(engine.DeviceApi.Authenticate(ReadOnlySpan<byte>.Empty));
    }

    [Fact]
    public async Task DuplicateNameInTenant_AndDuplicateToken_AreConflicts()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (tenant, _, token) = await Engines.CreateDeviceAsync(engine);
        Assert.Equal(RegistryStatus.Conflict, (await engine.Registry.CreateDeviceAsync(tenant, "dev-1")).Status);
        Assert.Equal(RegistryStatus.Conflict, (await engine.Registry.CreateDeviceAsync(tenant, "other", accessToken: token)).Status);
        var otherTenant = await engine.Registry.CreateTenantAsync("t2");
        Assert.True((await engine.Registry.CreateDeviceAsync(otherTenant.Value!.Id, "dev-1")).IsOk);
        Assert.Equal(RegistryStatus.NotFound, (await engine.Registry.CreateDeviceAsync(Guid.NewGuid(), "x")).Status);
        Assert.Equal(RegistryStatus.Invalid, (await engine.Registry.CreateDeviceAsync(tenant, "y", additionalInfoJson: "{bad")).Status);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task TenantCustomerUserAndEdgeUpdates_KeepTheirIds_AndSurviveARestart(bool checkpoint)
    {
        using var dir = new TempDir();
        Guid tenant, customer, user, edge;
        {
            await using var engine = await Engines.OpenAsync(dir.Path);
            tenant = (await engine.Registry.CreateTenantAsync("t")).Value!.Id;
            customer = (await engine.Registry.CreateCustomerAsync(tenant, "c")).Value!.Id;
            user = (await engine.Registry.CreateUserAsync(tenant, customer, "u@example.com", Authority.CustomerUser, "pw-1")).Value!.Id;
            var other = (await engine.Registry.CreateCustomerAsync(tenant, "taken")).Value!;

            Assert.True((await engine.Registry.UpdateTenantAsync(tenant, "t2", """{"city":"Lviv"}""")).IsOk);
            Assert.True((await engine.Registry.UpdateCustomerAsync(customer, "c2", """{"phone":"+1"}""")).IsOk);
            Assert.Equal(RegistryStatus.Conflict, (await engine.Registry.UpdateCustomerAsync(customer, other.Title, null)).Status);
            Assert.True((await engine.Registry.UpdateUserAsync(user, "v@example.com", "Ann", null, """{"phone":"+2"}""")).IsOk);
            Assert.True((await engine.Registry.SetPasswordAsync(user, "pw-2")).IsOk);
            Assert.Equal(RegistryStatus.NotFound, (await engine.Registry.UpdateCustomerAsync(Guid.NewGuid(), "x", null)).Status);
            edge = (await engine.Registry.CreateEdgeAsync(tenant, "e", routingKey: "rk-1")).Value!.Id;
            Assert.True((await engine.Registry.UpdateEdgeAsync(edge, "e2", null, "rk-2", "s2", "Label", """{"d":1}""")).IsOk);
            Assert.Equal(RegistryStatus.Conflict, (await engine.Registry.CreateEdgeAsync(tenant, "e2")).Status); // the name is taken
            if (checkpoint)
            {
                await engine.CheckpointAsync();
            }
        }

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(("t2", """{"city":"Lviv"}"""), (reopened.Registry.GetTenant(tenant)!.Title, reopened.Registry.GetTenant(tenant)!.DetailsJson));
        Assert.Equal(("c2", """{"phone":"+1"}"""), (reopened.Registry.GetCustomer(customer)!.Title, reopened.Registry.GetCustomer(customer)!.DetailsJson));
        var saved = reopened.Registry.GetUser(user)!;
        Assert.Equal(("v@example.com", "Ann", """{"phone":"+2"}""", Authority.CustomerUser), (saved.Email, saved.FirstName, saved.DetailsJson, saved.Authority));
        Assert.Null(reopened.Registry.FindUserByEmail("u@example.com"));
        Assert.Equal(user, reopened.Registry.VerifyPassword("v@example.com", "pw-2")?.Id);
        Assert.Null(reopened.Registry.VerifyPassword("v@example.com", "pw-1"));
        var savedEdge = reopened.Registry.GetEdge(edge)!;
        Assert.Equal(("e2", "rk-2", "s2", "Label", """{"d":1}"""), (savedEdge.Name, savedEdge.RoutingKey, savedEdge.Secret, savedEdge.Label, savedEdge.AdditionalInfoJson));
        Assert.Null(reopened.Registry.FindEdgeByRoutingKey("rk-1"));
        Assert.Equal(edge, reopened.Registry.FindEdgeByRoutingKey("rk-2")?.Id);
    }

    [Fact]
    public async Task ConcurrentCreatesOfSameName_ExactlyOneWins()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var tenant = (await engine.Registry.CreateTenantAsync("t")).Value!.Id;
        var results = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => engine.Registry.CreateDeviceAsync(tenant, "same")));
        Assert.Equal(1, results.Count(r => r.IsOk));
        Assert.Equal(19, results.Count(r => r.Status == RegistryStatus.Conflict));
    }

    [Fact]
    public async Task GatewayFlag_UpdateToken_AssignCustomer_Delete()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (tenant, device, token) = await Engines.CreateDeviceAsync(engine, "gw", "{\"gateway\":true}");
        Assert.True(device.IsGateway);

        var creds = await engine.Registry.UpdateAccessTokenAsync(device.Id, "new-token");
        Assert.True(creds.IsOk);
        Assert.Null(engine.DeviceApi.Authenticate(token));
        Assert.Equal(device.Id, engine.DeviceApi.Authenticate("new-token")?.Id);

        var customer = await engine.Registry.CreateCustomerAsync(tenant, "c");
        var assigned = await engine.Registry.AssignDeviceToCustomerAsync(device.Id, customer.Value!.Id);
        Assert.Equal(customer.Value.Id, assigned.Value!.CustomerId);
        Assert.Single(engine.Registry.ListDevices(tenant, customer.Value.Id, 10, 0).Data);
        Assert.Equal(Guid.Empty, (await engine.Registry.UnassignDeviceFromCustomerAsync(device.Id)).Value!.CustomerId);

        var session = new FakeSession(device.Id);
        engine.Sessions.Register(session);
        Assert.True((await engine.Registry.DeleteDeviceAsync(device.Id)).IsOk);
        Assert.Null(engine.Registry.GetDevice(device.Id));
        Assert.Equal("device deleted", await session.Closed);
        Assert.Null(engine.DeviceApi.Authenticate("new-token"));
        Assert.Null(engine.Registry.FindDeviceByName(tenant, "gw"));
    }

    [Fact]
    public async Task ListDevices_PagesSortsAndSearches()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var tenant = (await engine.Registry.CreateTenantAsync("t")).Value!.Id;
        foreach (var name in new[] { "charlie", "alpha", "bravo", "delta", "alpine" })
        {
            Assert.True((await engine.Registry.CreateDeviceAsync(tenant, name, type: name[..1])).IsOk);
        }
        var page0 = engine.Registry.ListDevices(tenant, null, 2, 0, null, "name", true);
        Assert.Equal(["alpha", "alpine"], page0.Data.Select(d => d.Name));
        Assert.Equal(3, page0.TotalPages);
        Assert.Equal(5, page0.TotalElements);
        Assert.True(page0.HasNext);
        var last = engine.Registry.ListDevices(tenant, null, 2, 2, null, "name", true);
        Assert.Equal(["delta"], last.Data.Select(d => d.Name));
        Assert.False(last.HasNext);
        Assert.Equal(["delta", "charlie"], engine.Registry.ListDevices(tenant, null, 2, 0, null, "name", false).Data.Select(d => d.Name));
        Assert.Equal(["alpha", "alpine"], engine.Registry.ListDevices(tenant, null, 10, 0, "ALP", "name", true).Data.Select(d => d.Name));
    }

    [Fact]
    public async Task Users_PasswordsAreHashed_AndVerified_EmailsUnique()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var tenant = (await engine.Registry.CreateTenantAsync("t")).Value!.Id;
        var user = await engine.Registry.CreateUserAsync(tenant, Guid.Empty, "admin@x.io", Authority.TenantAdmin, "s3cret");
        Assert.True(user.IsOk);
        Assert.DoesNotContain("s3cret", user.Value!.PasswordHash, StringComparison.Ordinal);
        Assert.NotNull(engine.Registry.VerifyPassword("ADMIN@x.io", "s3cret"));
        Assert.Null(engine.Registry.VerifyPassword("admin@x.io", "wrong"));
        Assert.Equal(RegistryStatus.Conflict, (await engine.Registry.CreateUserAsync(tenant, Guid.Empty, "admin@x.io", Authority.TenantAdmin, "p")).Status);
    }

    [Fact]
    public async Task OtaPackage_StoresBytesAndChecksum_AndServesChunks()
    {
        using var dir = new TempDir();
        var data = Enumerable.Range(0, 2500).Select(i => (byte)i).ToArray();
        Guid deviceId;
        Guid otaId;
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            var (tenant, device, _) = await Engines.CreateDeviceAsync(engine);
            deviceId = device.Id;
            var ota = await engine.Registry.CreateOtaPackageAsync(tenant, "fw", "1.0", data);
            Assert.True(ota.IsOk);
            otaId = ota.Value!.Id;
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(data)), ota.Value.Checksum);
            var session = new FakeSession(deviceId);
            engine.Sessions.Register(session);
            Assert.True((await engine.AssignFirmwareAsync(deviceId, otaId)).IsOk);
            await session.FirstAttributeUpdate;
            Assert.Contains(session.AttributeUpdates.SelectMany(u => u.Updated), kv => kv.Key == "fw_title" && kv.Text == "fw");
        }
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            var device = engine.Registry.GetDevice(deviceId)!;
            Assert.Equal(otaId, device.FirmwareId);
            var chunk1 = await engine.DeviceApi.GetFirmwareChunkAsync(device, null, null, 1024, 1);
            Assert.True(chunk1.Result.IsOk);
            Assert.Equal(data.AsSpan(1024, 1024).ToArray(), chunk1.Data.ToArray());
            Assert.Equal(452, (await engine.DeviceApi.GetFirmwareChunkAsync(device, "fw", "1.0", 1024, 2)).Data.Length);
            Assert.True((await engine.DeviceApi.GetFirmwareChunkAsync(device, null, null, 1024, 3)).Data.IsEmpty);
            Assert.True(engine.Attributes.TryGet(deviceId, AttributeScope.Shared, "fw_size", out var size));
            Assert.Equal(2500, size.Entry.LongValue);
        }
    }

    [Fact]
    public async Task Edges_HaveUniqueRoutingKeys()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var tenant = (await engine.Registry.CreateTenantAsync("t")).Value!.Id;
        var edge = await engine.Registry.CreateEdgeAsync(tenant, "e1", routingKey: "rk", secret: "sec");
        Assert.True(edge.IsOk);
        Assert.Equal(edge.Value!.Id, engine.Registry.FindEdgeByRoutingKey("rk")?.Id);
        Assert.Equal(RegistryStatus.Conflict, (await engine.Registry.CreateEdgeAsync(tenant, "e2", routingKey: "rk")).Status);
        Assert.True((await engine.Registry.DeleteEdgeAsync(edge.Value.Id)).IsOk);
        Assert.Null(engine.Registry.FindEdgeByRoutingKey("rk"));
    }
}
