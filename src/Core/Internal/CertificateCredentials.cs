using System.Buffers;
using System.Buffers.Text;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Perf.Core.Internal;

/// <summary>
/// X.509 device credentials in the reference's form: the value is the certificate's DER in base64 without
/// PEM armour or line breaks, the id is the lowercase hex SHA3-256 of that base64 text (the reference's
/// <c>EncryptionUtil.getSha3Hash(certTrimNewLines(pem))</c>), so ids match the reference's for the same certificate.
/// Where the platform has no SHA3-256 (it needs OpenSSL 1.1.1+ on Linux), the id is the SHA-256 of the DER;
/// ids are recomputed from the stored value at start-up, so a data directory moves between platforms.
/// </summary>
internal static class CertificateCredentials
{
    /// <summary>Characters of an id: 32 hash bytes in hex.</summary>
    public const int IdChars = 64;

    /// <summary>Largest certificate accepted (DER bytes); device certificates are 0.5 to 2 KB.</summary>
    public const int MaxDerBytes = 16 * 1024;

    /// <summary>
    /// Reads a certificate given as PEM (one <c>-----BEGIN CERTIFICATE-----</c> block) or as bare base64 (what the
    /// reference stores and answers). Null and a reason when it is not exactly one parseable X.509 certificate.
    /// </summary>
    public static byte[]? TryParse(string? value, out string? error)
    {
        error = null;
        if (string.IsNullOrWhiteSpace(value))
        {
            error = "credentialsValue must hold the device certificate (PEM)";
            return null;
        }

        byte[] der;
        if (value.Contains("-----BEGIN", StringComparison.Ordinal))
        {
            if (!PemEncoding.TryFind(value, out var fields) || value[fields.Label] is not "CERTIFICATE")
            {
                error = "credentialsValue is not a PEM certificate (-----BEGIN CERTIFICATE-----)";
                return null;
            }
            if (PemEncoding.TryFind(value.AsSpan(fields.Location.End.Value), out _))
            {
                error = "credentialsValue must hold one certificate, the device's own (not a chain or a key)";
                return null;
            }
            der = Convert.FromBase64String(value[fields.Base64Data]);
        }
        else
        {
            try
            {
                der = Convert.FromBase64String(value);
            }
            catch (FormatException)
            {
                error = "credentialsValue is neither a PEM certificate nor base64";
                return null;
            }
        }

        if (der.Length is 0 or > MaxDerBytes)
        {
            error = $"credentialsValue must be a certificate of 1..{MaxDerBytes} bytes";
            return null;
        }
        try
        {
            using var certificate = X509CertificateLoader.LoadCertificate(der);
        }
        catch (CryptographicException e)
        {
            error = "credentialsValue is not an X.509 certificate: " + e.Message;
            return null;
        }
        return der;
    }

    /// <summary>The credentials id of a certificate (see the class remarks), written into <paramref name="id"/> (64 chars).</summary>
    public static void WriteId(ReadOnlySpan<byte> der, Span<char> id)
    {
        Span<byte> hash = stackalloc byte[32];
        if (SHA3_256.IsSupported)
        {
            var base64Length = Base64.GetMaxEncodedToUtf8Length(der.Length);
            var rented = ArrayPool<byte>.Shared.Rent(base64Length);
            try
            {
                Base64.EncodeToUtf8(der, rented, out _, out var written);
                SHA3_256.HashData(rented.AsSpan(0, written), hash);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
        else
        {
            SHA256.HashData(der, hash);
        }
        Convert.TryToHexStringLower(hash, id, out _);
    }

    public static string Id(ReadOnlySpan<byte> der)
    {
        Span<char> id = stackalloc char[IdChars];
        WriteId(der, id);
        return new string(id);
    }
}
