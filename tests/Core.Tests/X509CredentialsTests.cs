using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Perf.Core.Tests;

public sealed class X509CredentialsTests
{
    private static X509Certificate2 SelfSigned(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + name, key, HashAlgorithmName.SHA256);
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
    }

    [Fact]
    public async Task Certificate_AuthenticatesItsDevice_ByTheReferenceId_AndSurvivesCheckpointReplayAndDeletion()
    {
        using var dir = new TempDir();
        using var a = SelfSigned("a");
        using var b = SelfSigned("b");
        Guid deviceA, deviceB;
        string tokenB;
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            var (tenant, device, token) = await Engines.CreateDeviceAsync(engine, "a");
            deviceA = device.Id;
            var saved = await engine.Registry.UpdateX509CertificateAsync(deviceA, a.ExportCertificatePem());
            Assert.True(saved.IsOk, saved.Error);
            var expectedId = Convert.ToHexStringLower(SHA3_256.HashData(Encoding.ASCII.GetBytes(Convert.ToBase64String(a.RawData))));
            Assert.Equal(expectedId, saved.Value!.CredentialsId);
            Assert.Equal(EntityRegistry.X509Certificate, engine.Registry.GetCredentials(deviceA)!.CredentialsType);
            Assert.Null(engine.DeviceApi.Authenticate(token));
            Assert.Null(engine.DeviceApi.Authenticate(expectedId));
            Assert.Equal(deviceA, engine.DeviceApi.AuthenticateCertificate(a.RawData)?.Id);
            Assert.Null(engine.DeviceApi.AuthenticateCertificate(b.RawData));

            await engine.CheckpointAsync();
            var second = await engine.Registry.CreateDeviceAsync(tenant, "b");
            deviceB = second.Value!.Id;
            tokenB = engine.Registry.GetCredentials(deviceB)!.CredentialsId;
            Assert.True((await engine.Registry.UpdateX509CertificateAsync(deviceB, Convert.ToBase64String(b.RawData))).IsOk);
            Assert.Equal(RegistryStatus.Conflict, (await engine.Registry.UpdateX509CertificateAsync(deviceB, a.ExportCertificatePem())).Status);
        }

        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            Assert.Equal(deviceA, engine.DeviceApi.AuthenticateCertificate(a.RawData)?.Id);
            Assert.Equal(deviceB, engine.DeviceApi.AuthenticateCertificate(b.RawData)?.Id);
            Assert.Null(engine.DeviceApi.Authenticate(tokenB));

            Assert.True((await engine.Registry.UpdateAccessTokenAsync(deviceB, "b-token")).IsOk);
            Assert.Null(engine.DeviceApi.AuthenticateCertificate(b.RawData));
            Assert.True((await engine.Registry.DeleteDeviceAsync(deviceA)).IsOk);
            Assert.Null(engine.DeviceApi.AuthenticateCertificate(a.RawData));
            await engine.CheckpointAsync();
        }

        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            Assert.Null(engine.DeviceApi.AuthenticateCertificate(a.RawData));
            Assert.Null(engine.DeviceApi.AuthenticateCertificate(b.RawData));
            Assert.Equal(deviceB, engine.DeviceApi.Authenticate("b-token")?.Id);
            Assert.Equal(EntityRegistry.AccessToken, engine.Registry.GetCredentials(deviceB)!.CredentialsType);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("not base64 at all!")]
    [InlineData("aGVsbG8=")]
    [InlineData("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")]
    public async Task NotOneCertificate_IsInvalid(string value)
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, token) = await Engines.CreateDeviceAsync(engine);

        var result = await engine.Registry.UpdateX509CertificateAsync(device.Id, value);

        Assert.Equal(RegistryStatus.Invalid, result.Status);
        Assert.Equal(device.Id, engine.DeviceApi.Authenticate(token)?.Id);
    }
}
