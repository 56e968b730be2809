using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Perf.EndToEnd;

/// <summary>
/// A throw-away PKI for the TLS tests, made with <see cref="CertificateRequest"/> and written as PEM / PFX files into
/// <see cref="Dir"/>: a CA, a server certificate it signed for 127.0.0.1 and localhost, a second CA nobody trusts,
/// and self-signed device certificates (as the reference's X.509 guide makes them).
/// </summary>
internal sealed class TestPki : IDisposable
{
    public const string KeyPassword = "key-secret-1";
    public const string PfxPassword = "pfx-secret-2";

    public TestPki()
    {
        Dir = Path.Combine(Path.GetTempPath(), "perf-pki-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Dir);
        Ca = CreateCa("Perf Test CA");
        using var otherCa = CreateCa("Some Other CA");
        Server = CreateServerCertificate(Ca);

        CaPem = Write("ca.pem", Ca.ExportCertificatePem());
        OtherCaPem = Write("other-ca.pem", otherCa.ExportCertificatePem());
        ServerPem = Write("server.pem", Server.ExportCertificatePem());
        using var key = Server.GetECDsaPrivateKey()!;
        ServerKeyPem = Write("server_key.pem", key.ExportPkcs8PrivateKeyPem());
        ServerEncryptedKeyPem = Write("server_key_encrypted.pem", key.ExportEncryptedPkcs8PrivateKeyPem(KeyPassword,
            new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 100_000)));

        // The key store carries the CA after the server certificate, as a chain exported from a real CA would.
        var pfx = new X509Certificate2Collection { Server, X509CertificateLoader.LoadCertificate(Ca.RawData) };
        ServerPfx = Path.Combine(Dir, "server.pfx");
        File.WriteAllBytes(ServerPfx, pfx.Export(X509ContentType.Pkcs12, PfxPassword)!);
    }

    public string Dir { get; }
    public X509Certificate2 Ca { get; }
    public X509Certificate2 Server { get; }
    public string CaPem { get; }
    public string OtherCaPem { get; }
    public string ServerPem { get; }
    public string ServerKeyPem { get; }
    public string ServerEncryptedKeyPem { get; }
    public string ServerPfx { get; }

    /// <summary>A self-signed device certificate (ECDSA P-256, clientAuth) written as <c>{name}.pem</c> and <c>{name}_key.pem</c>.</summary>
    public DeviceCertificate CreateDevice(string name, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + name, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        using var certificate = request.CreateSelfSigned(notBefore ?? DateTimeOffset.UtcNow.AddDays(-1), notAfter ?? DateTimeOffset.UtcNow.AddDays(30));
        var pem = certificate.ExportCertificatePem();
        var certPath = Write(name + ".pem", pem);
        var keyPath = Write(name + "_key.pem", key.ExportPkcs8PrivateKeyPem());

        // SslStream wants a key it can use as a client credential: a PKCS#12 round trip gives it one on every platform.
        var withKey = X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12, "x"), "x");
        return new DeviceCertificate(certPath, keyPath, pem, withKey);
    }

    /// <summary>The reference's credentials id of a certificate: hex SHA3-256 of its base64 DER (no PEM armour, no line breaks).</summary>
    public static string ReferenceCredentialsId(X509Certificate2 certificate) =>
        Convert.ToHexStringLower(SHA3_256.HashData(Encoding.ASCII.GetBytes(Convert.ToBase64String(certificate.RawData))));

    /// <summary>Accepts the server certificate only when it chains to <paramref name="ca"/> and names the host (what --cafile does).</summary>
    public static bool ChainsTo(X509Certificate2 ca, X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (certificate is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()));
    }

    /// <summary>An HttpClient for the HTTPS door that trusts the test CA only.</summary>
    public HttpClient CreateHttpsClient(int port)
    {
        var ca = Ca;
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, _, errors) => ChainsTo(ca, certificate, errors),
            },
        };
        return new HttpClient(handler) { BaseAddress = new Uri($"https://localhost:{port}"), Timeout = TimeSpan.FromSeconds(30) };
    }

    public void Dispose()
    {
        Ca.Dispose();
        Server.Dispose();
        TestDirectories.Delete(Dir);
    }

    private string Write(string name, string text)
    {
        var path = Path.Combine(Dir, name);
        File.WriteAllText(path, text + "\n");
        return path;
    }

    private static X509Certificate2 CreateCa(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + name, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
    }

    private static X509Certificate2 CreateServerCertificate(X509Certificate2 ca)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        using var signed = request.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(90), serial);
        return signed.CopyWithPrivateKey(key);
    }
}

/// <summary>A device certificate: PEM files for mosquitto_pub, the PEM text for REST, and the certificate with its key for .NET clients.</summary>
internal sealed record DeviceCertificate(string CertPath, string KeyPath, string Pem, X509Certificate2 Certificate);
