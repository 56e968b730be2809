using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>The authenticated caller, as carried in the JWT.</summary>
/// <param name="SessionId">The login the token belongs to (its access and refresh tokens share it): logout ends it.</param>
/// <param name="Stamp">A keyed digest of the user's password hash when the token was issued: a new password ends every older token.</param>
public sealed record AuthUser(Guid UserId, string Email, Authority Authority, Guid TenantId, Guid CustomerId, Guid SessionId = default, string? Stamp = null)
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
/// customerId, sessionId, iat, exp, plus our stamp of the password. Refresh tokens carry the scope REFRESH_TOKEN.
/// The signing key comes from configuration (<c>JWT_SIGNING_KEY</c>, base64) or is generated once and kept in DATA_DIR.
/// A logout ends its session (<see cref="EndSession"/>, kept in memory until the session's refresh token would
/// expire); a new password ends every token issued with the old one (the stamp no longer matches).
/// </summary>
public sealed class JwtService
{
    /// <summary>Tokens longer than this are refused unread (ours are about 600 characters).</summary>
    public const int MaxTokenChars = 4096;

    /// <summary>Allowance for iat/nbf slightly ahead of this clock (several hosts sharing a key).</summary>
    private const long ClockSkewSeconds = 60;
    private const string Issuer = "perf";
    private const string RefreshScope = "REFRESH_TOKEN";
    private static readonly byte[] HeaderSegment = Encoding.ASCII.GetBytes(Base64Url.EncodeToString("{\"alg\":\"HS512\",\"typ\":\"JWT\"}"u8));
    private static readonly JsonDocumentOptions StrictJson = new() { AllowDuplicateProperties = false, MaxDepth = 4 };
    /// <summary>Most access tokens remembered as checked (<see cref="Validate"/>); past it the memory starts over.</summary>
    internal const int MaxCheckedTokens = 4096;
    private readonly byte[] _key;
    private readonly TimeProvider _time;
    // Access tokens whose header and signature were checked, by their exact text: a later call with the same
    // token re-checks only the time claims (the signature cannot change without changing the text). Looked up
    // by span, so a call with a remembered token allocates no copy of it.
    private readonly ConcurrentDictionary<string, CheckedToken> _checked = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, CheckedToken>.AlternateLookup<ReadOnlySpan<char>> _checkedByText;

    private sealed record CheckedToken(AuthUser User, long NotBefore, long IssuedAt, long Expires);

    // Sessions ended by a logout, with the time (s) after which none of their tokens can be valid anyway.
    private readonly ConcurrentDictionary<Guid, long> _endedSessions = new();
    // The stamp of each user record (records are immutable: a new password is a new record).
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<User, string> _stamps = new();

    public JwtService(byte[] key, TimeSpan accessLifetime, TimeSpan refreshLifetime, TimeProvider? time = null)
    {
        if (key.Length < 32)
        {
            throw new ArgumentException("JWT signing key must be at least 256 bits", nameof(key));
        }

        _key = key;
        _checkedByText = _checked.GetAlternateLookup<ReadOnlySpan<char>>();
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
        var session = Guid.NewGuid();
        return (Sign(user, now, AccessLifetime, refresh: false, session), Sign(user, now, RefreshLifetime, refresh: true, session));
    }

    /// <summary>The user's current password stamp: a token carrying another one was issued before a password change.</summary>
    public string Stamp(User user)
    {
        if (_stamps.TryGetValue(user, out var stamp))
        {
            return stamp;
        }

        Span<byte> digest = stackalloc byte[HMACSHA256.HashSizeInBytes];
        HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes("stamp:" + user.PasswordHash), digest);
        stamp = Base64Url.EncodeToString(digest[..12]);
        _stamps.AddOrUpdate(user, stamp);
        return stamp;
    }

    /// <summary>Ends a login: its access and refresh tokens are refused from now on (logout).</summary>
    public void EndSession(Guid sessionId)
    {
        var now = _time.GetUtcNow().ToUnixTimeSeconds();
        foreach (var (ended, until) in _endedSessions)
        {
            if (until <= now)
            {
                _endedSessions.TryRemove(ended, out _);
            }
        }

        _endedSessions[sessionId] = now + (long)RefreshLifetime.TotalSeconds;
    }

    private bool Ended(AuthUser user) => _endedSessions.ContainsKey(user.SessionId); // lock-free (IsEmpty would take every lock when empty)

    /// <summary>
    /// Checks a token, strictest first: size, shape, the header (exactly <c>{"alg":"HS512","typ":"JWT"}</c>:
    /// no other algorithm, no <c>none</c>, no <c>crit</c> or key-carrying parameters), the HMAC-SHA512 signature
    /// (fixed-time compare), then the claims (issuer, kind, not-before, issued-at, expiry).
    /// <see cref="TokenCheck.Expired"/> is only answered for a token we signed, so it tells a forger nothing.
    /// </summary>
    public TokenCheck Validate(ReadOnlySpan<char> token, bool refresh, out AuthUser? user)
    {
        user = null;
        if (token.IsEmpty || token.Length > MaxTokenChars)
        {
            return TokenCheck.Invalid;
        }

        if (!refresh && _checkedByText.TryGetValue(token, out var known))
        {
            var at = _time.GetUtcNow().ToUnixTimeSeconds();
            if (known.NotBefore <= at + ClockSkewSeconds && known.IssuedAt <= at + ClockSkewSeconds)
            {
                if (known.Expires <= at)
                {
                    _checkedByText.TryRemove(token, out _, out _);
                    return TokenCheck.Expired;
                }

                user = known.User;
                return Ended(user) ? TokenCheck.Invalid : TokenCheck.Valid;
            }
        }

        var firstDot = token.IndexOf('.');
        var afterFirst = firstDot < 0 ? -1 : token[(firstDot + 1)..].IndexOf('.');
        var secondDot = afterFirst < 0 ? -1 : firstDot + 1 + afterFirst;
        if (firstDot <= 0 || secondDot < 0 || token[(secondDot + 1)..].Contains('.') || secondDot == firstDot + 1)
        {
            return TokenCheck.Invalid;
        }

        var headerPart = token[..firstDot];
        var payloadPart = token.Slice(firstDot + 1, secondDot - firstDot - 1);
        var signaturePart = token[(secondDot + 1)..];
        byte[] header;
        byte[] payload;
        byte[] signature;
        try
        {
            header = Base64Url.DecodeFromChars(headerPart);
            payload = Base64Url.DecodeFromChars(payloadPart);
            signature = Base64Url.DecodeFromChars(signaturePart);
        }
        catch (FormatException)
        {
            return TokenCheck.Invalid;
        }

        // The algorithm is ours to choose, never the token's (RFC 8725 §2.1, §3.1): a header naming anything
        // but HS512 (none, HS256, RS256, "hs512") is refused before any key is used.
        if (!IsOurHeader(header))
        {
            return TokenCheck.Invalid;
        }

        Span<byte> expected = stackalloc byte[HMACSHA512.HashSizeInBytes];
        var signingInput = new byte[secondDot];
        Encoding.ASCII.GetBytes(token[..secondDot], signingInput);
        HMACSHA512.HashData(_key, signingInput, expected);
        if (!CryptographicOperations.FixedTimeEquals(signature, expected))
        {
            return TokenCheck.Invalid;
        }

        try
        {
            using var doc = JsonDocument.Parse(payload, StrictJson);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || root.GetProperty("iss").GetString() != Issuer)
            {
                return TokenCheck.Invalid;
            }

            var scopes = root.GetProperty("scopes");
            if (scopes.GetArrayLength() != 1)
            {
                return TokenCheck.Invalid;
            }

            var scope = scopes[0].GetString();
            var isRefresh = scope == RefreshScope;
            if (isRefresh != refresh)
            {
                return TokenCheck.Invalid;
            }

            var now = _time.GetUtcNow().ToUnixTimeSeconds();
            var notBefore = root.TryGetProperty("nbf", out var nbf) ? nbf.GetInt64() : long.MinValue;
            if (notBefore > now + ClockSkewSeconds)
            {
                return TokenCheck.Invalid;
            }

            var issuedAt = root.GetProperty("iat").GetInt64();
            if (issuedAt > now + ClockSkewSeconds)
            {
                return TokenCheck.Invalid;
            }

            var expires = root.GetProperty("exp").GetInt64();
            if (expires <= now)
            {
                return TokenCheck.Expired;
            }

            var authority = refresh ? Authority.CustomerUser : ParseAuthority(scope);
            user = new AuthUser(
                Guid.Parse(root.GetProperty("userId").GetString()!),
                root.GetProperty("sub").GetString()!,
                authority,
                EntityJson.FromNullUid(Guid.Parse(root.GetProperty("tenantId").GetString()!)),
                EntityJson.FromNullUid(Guid.Parse(root.GetProperty("customerId").GetString()!)),
                root.TryGetProperty("sessionId", out var session) ? Guid.Parse(session.GetString()!) : Guid.Empty,
                root.TryGetProperty("stamp", out var stamp) ? stamp.GetString() : null);
            if (Ended(user))
            {
                user = null;
                return TokenCheck.Invalid;
            }

            if (!refresh)
            {
                if (_checked.Count >= MaxCheckedTokens)
                {
                    _checked.Clear();
                }

                _checked[token.ToString()] = new CheckedToken(user, notBefore, issuedAt, expires);
            }

            return TokenCheck.Valid;
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or FormatException or InvalidOperationException or IndexOutOfRangeException or ArgumentNullException)
        {
            return TokenCheck.Invalid;
        }
    }

    /// <summary>The header we issue, parsed: <c>alg</c> exactly HS512, <c>typ</c> JWT if present, nothing else.</summary>
    private static bool IsOurHeader(ReadOnlySpan<byte> header)
    {
        try
        {
            var reader = new Utf8JsonReader(header, new JsonReaderOptions { MaxDepth = 2 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            var sawAlg = false;
            var sawTyp = false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("alg"u8) && !sawAlg)
                {
                    sawAlg = reader.Read() && reader.TokenType == JsonTokenType.String && reader.ValueTextEquals("HS512"u8);
                    if (!sawAlg)
                    {
                        return false;
                    }
                }
                else if (reader.ValueTextEquals("typ"u8) && !sawTyp)
                {
                    sawTyp = true;
                    if (!reader.Read() || reader.TokenType != JsonTokenType.String || !reader.ValueTextEquals("JWT"u8))
                    {
                        return false;
                    }
                }
                else
                {
                    // crit (RFC 7515 §4.1.11: extensions we do not understand must be refused), kid, jku, jwk,
                    // x5u, x5c (keys named by the token), a repeated alg/typ, or anything else we never issue.
                    return false;
                }
            }

            return sawAlg && reader.TokenType == JsonTokenType.EndObject && !reader.Read();
        }
        catch (JsonException)
        {
            return false;
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

    private static Guid OrNullUid(Guid id) => id == Guid.Empty ? EntityJson.NullUid : id;

    private string Sign(User user, long now, TimeSpan lifetime, bool refresh, Guid session)
    {
        var claims = new Dictionary<string, object>
        {
            ["sub"] = user.Email,
            ["userId"] = user.Id.ToString(),
            ["sessionId"] = session.ToString(),
            ["stamp"] = Stamp(user),
            ["scopes"] = new[] { refresh ? RefreshScope : AuthorityName(user.Authority) },
            // No tenant (a system administrator) or no customer is the reference's NULL_UUID, as in entity JSON.
            ["tenantId"] = OrNullUid(user.TenantId).ToString(),
            ["customerId"] = OrNullUid(user.CustomerId).ToString(),
            ["iss"] = Issuer,
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
