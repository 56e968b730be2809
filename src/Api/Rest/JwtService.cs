using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>The authenticated caller, as carried in the JWT.</summary>
public sealed record AuthUser(Guid UserId, string Email, Authority Authority, Guid TenantId, Guid CustomerId)
{
    public bool IsSysAdmin => Authority == Authority.SysAdmin;
    public bool IsCustomer => Authority == Authority.CustomerUser;
}

public enum TokenCheck
{
    Valid,
    Invalid,
    Expired,
}

/// <summary>
/// HS512 JWTs in the reference's shape: claims sub (email), userId, scopes ([authority]), tenantId,
/// customerId, iat, exp. Refresh tokens carry the scope REFRESH_TOKEN. The signing key comes from
/// configuration (<c>JWT_SIGNING_KEY</c>, base64) or is generated once and kept in DATA_DIR.
/// </summary>
public sealed class JwtService
{
    private static readonly byte[] HeaderSegment = Encoding.ASCII.GetBytes(Base64Url.EncodeToString("{\"alg\":\"HS512\",\"typ\":\"JWT\"}"u8));
    private readonly byte[] _key;
    private readonly TimeProvider _time;

    public JwtService(byte[] key, TimeSpan accessLifetime, TimeSpan refreshLifetime, TimeProvider? time = null)
    {
        if (key.Length < 32)
        {
            throw new ArgumentException("JWT signing key must be at least 256 bits", nameof(key));
        }

        _key = key;
        AccessLifetime = accessLifetime;
        RefreshLifetime = refreshLifetime;
        _time = time ?? TimeProvider.System;
    }

    public TimeSpan AccessLifetime { get; }
    public TimeSpan RefreshLifetime { get; }

    /// <summary>Loads the key from configuration or DATA_DIR/jwt.key, creating it on first start.</summary>
    public static byte[] LoadOrCreateKey(string? configured, string dataDir)
    {
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return Convert.FromBase64String(configured);
        }

        var path = Path.Combine(dataDir, "jwt.key");
        if (File.Exists(path))
        {
            return Convert.FromBase64String(File.ReadAllText(path).Trim());
        }

        Directory.CreateDirectory(dataDir);
        var key = RandomNumberGenerator.GetBytes(64);
        var temp = path + ".tmp";
        File.WriteAllText(temp, Convert.ToBase64String(key));
        File.Move(temp, path, overwrite: true);
        return key;
    }

    public (string Token, string RefreshToken) Issue(User user)
    {
        var now = _time.GetUtcNow().ToUnixTimeSeconds();
        return (Sign(user, now, AccessLifetime, refresh: false), Sign(user, now, RefreshLifetime, refresh: true));
    }

    public TokenCheck Validate(string token, bool refresh, out AuthUser? user)
    {
        user = null;
        var parts = token.Split('.');
        if (parts.Length != 3)
        {
            return TokenCheck.Invalid;
        }

        var signed = Encoding.ASCII.GetBytes(parts[0] + "." + parts[1]);
        var expected = HMACSHA512.HashData(_key, signed);
        byte[] signature;
        byte[] payload;
        try
        {
            signature = Base64Url.DecodeFromChars(parts[2]);
            payload = Base64Url.DecodeFromChars(parts[1]);
        }
        catch (FormatException)
        {
            return TokenCheck.Invalid;
        }

        if (!CryptographicOperations.FixedTimeEquals(signature, expected))
        {
            return TokenCheck.Invalid;
        }

        try
        {
            using var doc = JsonDocument.Parse(payload);
            var root = doc.RootElement;
            var scope = root.GetProperty("scopes")[0].GetString();
            var isRefresh = scope == "REFRESH_TOKEN";
            if (isRefresh != refresh)
            {
                return TokenCheck.Invalid;
            }

            if (root.GetProperty("exp").GetInt64() <= _time.GetUtcNow().ToUnixTimeSeconds())
            {
                return TokenCheck.Expired;
            }

            var authority = refresh ? Authority.CustomerUser : ParseAuthority(scope);
            user = new AuthUser(
                Guid.Parse(root.GetProperty("userId").GetString()!),
                root.GetProperty("sub").GetString()!,
                authority,
                Guid.Parse(root.GetProperty("tenantId").GetString()!),
                Guid.Parse(root.GetProperty("customerId").GetString()!));
            return TokenCheck.Valid;
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or FormatException or InvalidOperationException or IndexOutOfRangeException)
        {
            return TokenCheck.Invalid;
        }
    }

    public static string AuthorityName(Authority authority) => authority switch
    {
        Authority.SysAdmin => "SYS_ADMIN",
        Authority.TenantAdmin => "TENANT_ADMIN",
        _ => "CUSTOMER_USER",
    };

    public static Authority ParseAuthority(string? name) => name switch
    {
        "SYS_ADMIN" => Authority.SysAdmin,
        "TENANT_ADMIN" => Authority.TenantAdmin,
        "CUSTOMER_USER" => Authority.CustomerUser,
        _ => throw new FormatException($"unknown authority '{name}'"),
    };

    private string Sign(User user, long now, TimeSpan lifetime, bool refresh)
    {
        var claims = new Dictionary<string, object>
        {
            ["sub"] = user.Email,
            ["userId"] = user.Id.ToString(),
            ["scopes"] = new[] { refresh ? "REFRESH_TOKEN" : AuthorityName(user.Authority) },
            ["tenantId"] = user.TenantId.ToString(),
            ["customerId"] = user.CustomerId.ToString(),
            ["iss"] = "perf",
            ["jti"] = Guid.NewGuid().ToString("N"),
            ["iat"] = now,
            ["exp"] = now + (long)lifetime.TotalSeconds,
        };
        if (!refresh)
        {
            claims["firstName"] = user.FirstName ?? string.Empty;
            claims["lastName"] = user.LastName ?? string.Empty;
            claims["enabled"] = true;
            claims["isPublic"] = false;
        }

        var payload = Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(claims));
        var signingInput = Encoding.ASCII.GetString(HeaderSegment) + "." + payload;
        var signature = HMACSHA512.HashData(_key, Encoding.ASCII.GetBytes(signingInput));
        return signingInput + "." + Base64Url.EncodeToString(signature);
    }
}
