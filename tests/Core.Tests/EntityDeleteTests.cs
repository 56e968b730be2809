using Microsoft.Extensions.Logging.Abstractions;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Core.Tests;

public sealed class EntityDeleteTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "perf-delete-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    private Task<PerfEngine> OpenAsync() =>
        PerfEngine.OpenAsync(new CoreOptions { DataDir = _dir }, NullLoggerFactory.Instance, CancellationToken.None);

    [Fact]
    public async Task DeletingATenant_RemovesItsCustomersUsersDevicesAndEdges_AndSurvivesReopen()
    {
        Guid tenantId, customerId, userId, deviceId, otherDeviceId;
        await using (var engine = await OpenAsync())
        {
            var registry = engine.Registry;
            tenantId = (await registry.CreateTenantAsync("t")).Value!.Id;
            var other = (await registry.CreateTenantAsync("other")).Value!.Id;
            customerId = (await registry.CreateCustomerAsync(tenantId, "c")).Value!.Id;
            userId = (await registry.CreateUserAsync(tenantId, customerId, "u@example.com", Authority.CustomerUser, "pw")).Value!.Id;
            deviceId = (await registry.CreateDeviceAsync(tenantId, "d", accessToken: "tok-d")).Value!.Id;
            otherDeviceId = (await registry.CreateDeviceAsync(other, "d", accessToken: "tok-o")).Value!.Id;
            await registry.CreateEdgeAsync(tenantId, "e");

            Assert.True((await registry.DeleteTenantAsync(tenantId)).IsOk);
            Assert.Equal(RegistryStatus.NotFound, (await registry.DeleteTenantAsync(tenantId)).Status);
        }

        await using (var reopened = await OpenAsync())
        {
            var registry = reopened.Registry;
            Assert.Null(registry.GetTenant(tenantId));
            Assert.Null(registry.GetCustomer(customerId));
            Assert.Null(registry.GetUser(userId));
            Assert.Null(registry.FindUserByEmail("u@example.com"));
            Assert.Null(registry.GetDevice(deviceId));
            Assert.Null(registry.FindDeviceByToken("tok-d"));
            Assert.Empty(registry.ListEdges(tenantId));
            Assert.NotNull(registry.GetDevice(otherDeviceId));
        }
    }

    [Fact]
    public async Task DeletingACustomer_UnassignsItsDevicesAndEdges_AndDeletesItsUsers()
    {
        await using var engine = await OpenAsync();
        var registry = engine.Registry;
        var tenantId = (await registry.CreateTenantAsync("t")).Value!.Id;
        var customerId = (await registry.CreateCustomerAsync(tenantId, "c")).Value!.Id;
        var userId = (await registry.CreateUserAsync(tenantId, customerId, "cu@example.com", Authority.CustomerUser, "pw")).Value!.Id;
        var deviceId = (await registry.CreateDeviceAsync(tenantId, "d", customerId: customerId)).Value!.Id;
        var edgeId = (await registry.CreateEdgeAsync(tenantId, "e", customerId: customerId)).Value!.Id;

        Assert.True((await registry.DeleteCustomerAsync(customerId)).IsOk);

        Assert.Null(registry.GetCustomer(customerId));
        Assert.Null(registry.GetUser(userId));
        Assert.Equal(Guid.Empty, registry.GetDevice(deviceId)!.CustomerId);
        Assert.Equal(Guid.Empty, registry.GetEdge(edgeId)!.CustomerId);
    }

    [Fact]
    public async Task DeletingAUser_FreesItsEmail()
    {
        await using var engine = await OpenAsync();
        var registry = engine.Registry;
        var tenantId = (await registry.CreateTenantAsync("t")).Value!.Id;
        var userId = (await registry.CreateUserAsync(tenantId, Guid.Empty, "a@example.com", Authority.TenantAdmin, "pw")).Value!.Id;
        Assert.True((await registry.DeleteUserAsync(userId)).IsOk);
        Assert.Null(registry.VerifyPassword("a@example.com", "pw"));
        Assert.True((await registry.CreateUserAsync(tenantId, Guid.Empty, "a@example.com", Authority.TenantAdmin, "pw2")).IsOk);
    }
}
