using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Perf.Api.Hosting;

/// <summary>Where a TLS door's server certificate comes from (the reference's <c>*_SSL_CREDENTIALS_TYPE</c>).</summary>
public enum TlsCredentialsType
{
    /// <summary>A PEM certificate file (leaf first, then any intermediates) and a PEM private key file (PKCS#8, optionally encrypted).</summary>
    Pem,

    /// <summary>A PKCS#12 (.pfx / .p12) key store with the certificate, its private key and any intermediates.</summary>
    KeyStore,
}

/// <summary>
/// One TLS door: MQTT over TLS (<c>MQTT_SSL_*</c>) or HTTPS (<c>SSL_*</c>), named as in the reference's
/// configuration. Relative file paths are resolved against the working directory, as <c>DATA_DIR</c> is.
/// </summary>
public sealed class TlsSettings
{
    public bool Enabled { get; init; }
    public IPAddress BindAddress { get; init; } = IPAddress.Any;
    public int Port { get; init; }
    public TlsCredentialsType CredentialsType { get; init; }
    public string PemCert { get; init; } = "";
    public string PemKey { get; init; } = "";
    public string? PemKeyPassword { get; init; }
    public string KeyStore { get; init; } = "";
    public string? KeyStorePassword { get; init; }

    /// <summary>MQTT only: accept expired or not-yet-valid client certificates (the reference's <c>MQTT_SSL_SKIP_VALIDITY_CHECK_FOR_CLIENT_CERT</c>).</summary>
    public bool SkipValidityCheckForClientCert { get; init; }

    /// <summary>A connection that has not completed its handshake by then is closed (<c>TLS_HANDSHAKE_TIMEOUT_SECONDS</c>).</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The prefix of this door's setting names (<c>MQTT_SSL_</c> or <c>SSL_</c>), for messages.</summary>
    public string Prefix { get; init; } = "";

    /// <summary>MQTT over TLS: <c>MQTT_SSL_ENABLED</c>, <c>MQTT_SSL_BIND_ADDRESS</c>, <c>MQTT_SSL_BIND_PORT</c> (8883), ...</summary>
    public static TlsSettings ForMqtt(IConfiguration configuration, IPAddress bindAddress) =>
        Read(configuration, "MQTT_SSL_", configuration["MQTT_SSL_BIND_ADDRESS"] is { Length: > 0 } a ? HostSettings.ParseAddress(a, "MQTT_SSL_BIND_ADDRESS") : bindAddress,
            "MQTT_SSL_BIND_PORT", 8883, "mqttserver.pem", "mqttserver_key.pem", "mqttserver.p12");

    /// <summary>HTTPS: <c>SSL_ENABLED</c>, <c>HTTPS_BIND_PORT</c> (8443), <c>SSL_CREDENTIALS_TYPE</c>, ... on <c>BIND_ADDRESS</c>.</summary>
    public static TlsSettings ForHttp(IConfiguration configuration, IPAddress bindAddress) =>
        Read(configuration, "SSL_", bindAddress, "HTTPS_BIND_PORT", 8443, "server.pem", "server_key.pem", "keystore.p12");

    private static TlsSettings Read(
        IConfiguration c, string prefix, IPAddress bindAddress, string portName, int defaultPort, string pemCert, string pemKey, string keyStore)
    {
        var type = c[prefix + "CREDENTIALS_TYPE"];
        return new TlsSettings
        {
            Prefix = prefix,
            Enabled = ConfigValues.Bool(c, prefix + "ENABLED", false),
            BindAddress = bindAddress,
            Port = ConfigValues.Port(c, portName, defaultPort),
            CredentialsType = string.IsNullOrWhiteSpace(type) || type.Equals("PEM", StringComparison.OrdinalIgnoreCase) ? TlsCredentialsType.Pem
                : type.Equals("KEYSTORE", StringComparison.OrdinalIgnoreCase) ? TlsCredentialsType.KeyStore
                : throw new InvalidOperationException($"{prefix}CREDENTIALS_TYPE '{type}' is not PEM or KEYSTORE"),
            PemCert = c[prefix + "PEM_CERT"] is { Length: > 0 } cert ? cert : pemCert,
            PemKey = c[prefix + "PEM_KEY"] is { Length: > 0 } key ? key : pemKey,
            PemKeyPassword = NullIfEmpty(c[prefix + "PEM_KEY_PASSWORD"]),
            KeyStore = c[prefix + "KEY_STORE"] is { Length: > 0 } store ? store : keyStore,
            KeyStorePassword = NullIfEmpty(c[prefix + "KEY_STORE_PASSWORD"]),
            SkipValidityCheckForClientCert = ConfigValues.Bool(c, prefix + "SKIP_VALIDITY_CHECK_FOR_CLIENT_CERT", false),
            HandshakeTimeout = TimeSpan.FromSeconds(ConfigValues.NonNegativeDouble(c, "TLS_HANDSHAKE_TIMEOUT_SECONDS", 10) is var s && s > 0 ? s : 10),
        };
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    /// <summary>
    /// Loads the server certificate with its private key, and the intermediates that follow it. A missing file, a
    /// wrong password or a certificate without its key stops the start-up with a message naming the setting (never the password).
    /// </summary>
    public X509Certificate2 LoadCertificate(out X509Certificate2Collection chain)
    {
        try
        {
            var certificate = CredentialsType == TlsCredentialsType.Pem ? LoadPem(out chain) : LoadKeyStore(out chain);
            if (!certificate.HasPrivateKey)
            {
                throw new InvalidOperationException("the certificate has no private key");
            }

            // SslStream on Windows cannot use the ephemeral key of a PEM import; elsewhere it can.
            return OperatingSystem.IsWindows() ? X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null) : certificate;
        }
        catch (Exception e) when (e is CryptographicException or IOException or InvalidOperationException or ArgumentException)
        {
            var source = CredentialsType == TlsCredentialsType.Pem
                ? $"{Prefix}PEM_CERT '{PemCert}' / {Prefix}PEM_KEY '{PemKey}'"
                : $"{Prefix}KEY_STORE '{KeyStore}'";
            throw new InvalidOperationException($"TLS certificate from {source} could not be loaded: {e.Message}", e);
        }
    }

    private X509Certificate2 LoadPem(out X509Certificate2Collection chain)
    {
        var certPath = Path.GetFullPath(PemCert);
        var all = new X509Certificate2Collection();
        all.ImportFromPemFile(certPath);
        if (all.Count == 0)
        {
            throw new InvalidOperationException("the certificate file holds no -----BEGIN CERTIFICATE----- block");
        }

        // The key may sit in the certificate file itself when no separate key file exists.
        var keyPath = File.Exists(PemKey) ? Path.GetFullPath(PemKey)
            : File.ReadAllText(certPath).Contains("PRIVATE KEY-----", StringComparison.Ordinal) ? certPath
            : throw new FileNotFoundException($"the key file '{Path.GetFullPath(PemKey)}' does not exist and the certificate file holds no key");
        var encrypted = File.ReadAllText(keyPath).Contains("-----BEGIN ENCRYPTED PRIVATE KEY-----", StringComparison.Ordinal);
        if (encrypted && PemKeyPassword is null)
        {
            throw new InvalidOperationException($"the private key is encrypted and {Prefix}PEM_KEY_PASSWORD is not set");
        }

        var leaf = encrypted
            ? X509Certificate2.CreateFromEncryptedPemFile(certPath, PemKeyPassword, keyPath)
            : X509Certificate2.CreateFromPemFile(certPath, keyPath);
        chain = [.. all.Skip(1)];
        return leaf;
    }

    private X509Certificate2 LoadKeyStore(out X509Certificate2Collection chain)
    {
        var all = X509CertificateLoader.LoadPkcs12CollectionFromFile(Path.GetFullPath(KeyStore), KeyStorePassword);
        var leaf = all.FirstOrDefault(c => c.HasPrivateKey)
            ?? throw new InvalidOperationException("the key store holds no certificate with a private key");
        chain = [.. all.Where(c => !ReferenceEquals(c, leaf))];
        return leaf;
    }
}
