using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using Perf.Api.Rest;
using Perf.Core.Domain;

namespace Perf.Api.Tests;

public sealed class JwtServiceTests
{
    private static readonly User Tenant = new(Guid.NewGuid(), Guid.NewGuid(), Guid.Empty, "t@example.com", Authority.TenantAdmin, "hash", null, null, 0);

    private sealed class ManualClock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    [Fact]
    public void IssuedAccessToken_ValidatesWithItsClaims()
    {
        var jwt = new JwtService(RandomNumberGenerator.GetBytes(64), TimeSpan.FromHours(1), TimeSpan.FromDays(1));
        var (token, _) = jwt.Issue(Tenant);
        Assert.Equal(TokenCheck.Valid, jwt.Validate(token, refresh: false, out var user));
        Assert.Equal(Tenant.Id, user!.UserId);
        Assert.Equal(Authority.TenantAdmin, user.Authority);
        Assert.Equal(Tenant.TenantId, user.TenantId);
        Assert.Equal(Guid.Empty, user.CustomerId);

        // No customer travels as the reference's NULL_UUID, as in entity JSON.
        var payload = token.Split('.')[1].Replace('-', '+').Replace('_', '/');
        var claims = System.Text.Json.Nodes.JsonNode.Parse(Convert.FromBase64String(payload.PadRight(payload.Length + ((4 - (payload.Length % 4)) % 4), '=')))!;
        Assert.Equal("13814000-1dd2-11b2-8080-808080808080", claims["customerId"]!.GetValue<string>());
    }

    [Fact]
    public void AccessToken_IsExpired_AfterItsLifetime()
    {
        var clock = new ManualClock(DateTimeOffset.UtcNow);
        var jwt = new JwtService(RandomNumberGenerator.GetBytes(64), TimeSpan.FromSeconds(9000), TimeSpan.FromDays(7), clock);
        var (token, refresh) = jwt.Issue(Tenant);
        clock.Now += TimeSpan.FromSeconds(9001);
        Assert.Equal(TokenCheck.Expired, jwt.Validate(token, refresh: false, out _));
        Assert.Equal(TokenCheck.Valid, jwt.Validate(refresh, refresh: true, out _));
    }

    [Fact]
    public void CheckedAccessToken_IsStillExpired_AfterItsLifetime()
    {
        var clock = new ManualClock(DateTimeOffset.UtcNow);
        var jwt = new JwtService(RandomNumberGenerator.GetBytes(64), TimeSpan.FromSeconds(100), TimeSpan.FromDays(7), clock);
        var (token, _) = jwt.Issue(Tenant);
        Assert.Equal(TokenCheck.Valid, jwt.Validate(token, refresh: false, out _));
        Assert.Equal(TokenCheck.Valid, jwt.Validate(token, refresh: false, out var again));
        Assert.Equal(Tenant.Id, again!.UserId);
        clock.Now += TimeSpan.FromSeconds(101);
        Assert.Equal(TokenCheck.Expired, jwt.Validate(token, refresh: false, out var expired));
        Assert.Null(expired);
        Assert.Equal(TokenCheck.Expired, jwt.Validate(token, refresh: false, out _));
    }

    [Fact]
    public void CheckedAccessToken_ReadFromASliceOfItsHeader_IsRememberedByItsText()
    {
        var clock = new ManualClock(DateTimeOffset.UtcNow);
        var jwt = new JwtService(RandomNumberGenerator.GetBytes(64), TimeSpan.FromSeconds(100), TimeSpan.FromDays(7), clock);
        var (token, _) = jwt.Issue(Tenant);
        var header = "Bearer " + token + " ";
        Assert.Equal(TokenCheck.Valid, jwt.Validate(JwtAuthFilter.ReadBearer(header), refresh: false, out var first));
        Assert.Equal(TokenCheck.Valid, jwt.Validate(JwtAuthFilter.ReadBearer(header), refresh: false, out var again));
        Assert.Same(first, again);
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(JwtAuthFilter.ReadBearer("Bearer " + token[..^1]), refresh: false, out _));
        clock.Now += TimeSpan.FromSeconds(101);
        Assert.Equal(TokenCheck.Expired, jwt.Validate(JwtAuthFilter.ReadBearer(header), refresh: false, out var expired));
        Assert.Null(expired);
    }

    [Fact]
    public void CheckedAccessToken_WithOneCharacterChanged_IsInvalid()
    {
        var jwt = new JwtService(RandomNumberGenerator.GetBytes(64), TimeSpan.FromHours(1), TimeSpan.FromDays(1));
        var (token, _) = jwt.Issue(Tenant);
        Assert.Equal(TokenCheck.Valid, jwt.Validate(token, refresh: false, out _));
        var last = token[^2] == 'A' ? 'B' : 'A';
        var tampered = token[..^2] + last + token[^1];
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(tampered, refresh: false, out _));
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(token, refresh: true, out _));
    }

    [Fact]
    public void MoreTokensThanRemembered_AllStillValidate()
    {
        var jwt = new JwtService(RandomNumberGenerator.GetBytes(64), TimeSpan.FromHours(1), TimeSpan.FromDays(1));
        var tokens = new List<string>();
        for (var i = 0; i < JwtService.MaxCheckedTokens + 10; i++)
        {
            var user = Tenant with { Id = Guid.NewGuid() };
            tokens.Add(jwt.Issue(user).Token);
        }

        foreach (var token in tokens)
        {
            Assert.Equal(TokenCheck.Valid, jwt.Validate(token, refresh: false, out _));
        }

        Assert.Equal(TokenCheck.Valid, jwt.Validate(tokens[0], refresh: false, out var first));
        Assert.NotNull(first);
    }

    [Fact]
    public void TokenSignedWithAnotherKey_IsInvalid()
    {
        var a = new JwtService(RandomNumberGenerator.GetBytes(64), TimeSpan.FromHours(1), TimeSpan.FromDays(1));
        var b = new JwtService(RandomNumberGenerator.GetBytes(64), TimeSpan.FromHours(1), TimeSpan.FromDays(1));
        var (token, _) = a.Issue(Tenant);
        Assert.Equal(TokenCheck.Invalid, b.Validate(token, refresh: false, out _));
        Assert.Equal(TokenCheck.Invalid, a.Validate("not.a.jwt", refresh: false, out _));
        Assert.Equal(TokenCheck.Invalid, a.Validate("garbage", refresh: false, out _));
    }

    [Fact]
    public void RefreshToken_IsNotAnAccessToken_AndViceVersa()
    {
        var jwt = new JwtService(RandomNumberGenerator.GetBytes(64), TimeSpan.FromHours(1), TimeSpan.FromDays(1));
        var (token, refresh) = jwt.Issue(Tenant);
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(refresh, refresh: false, out _));
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(token, refresh: true, out _));
    }

    [Fact]
    public void SigningKey_IsGeneratedOnce_AndReusedFromTheDataDirectory()
    {
        var dir = Path.Combine(Path.GetTempPath(), "perf-jwt-" + Guid.NewGuid().ToString("N"));
        try
        {
            var first = JwtService.LoadOrCreateKey(null, dir);
            var second = JwtService.LoadOrCreateKey(null, dir);
            Assert.Equal(first, second);
            Assert.Equal(64, first.Length);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("Bearer abc", "abc")]
    [InlineData("bearer abc", "abc")]
    [InlineData("Basic abc", null)]
    [InlineData("Bearer ", null)]
    [InlineData(null, null)]
    public void BearerHeader_IsRead(string? header, string? expected) =>
        Assert.Equal(expected ?? "", JwtAuthFilter.ReadBearer(header).ToString());

    // ------------------------------------------------------------------ forged and malformed tokens

    private static readonly byte[] Key = RandomNumberGenerator.GetBytes(64);

    private static JwtService Service(TimeProvider? clock = null) => new(Key, TimeSpan.FromHours(1), TimeSpan.FromDays(1), clock);

    private static string B64(string json) => Base64Url.EncodeToString(Encoding.UTF8.GetBytes(json));

    /// <summary>An access token's claims as we issue them, for tampering.</summary>
    private static string Claims(long iat, long exp, string scope = "TENANT_ADMIN", string extra = "") =>
        $$"""{"sub":"t@example.com","userId":"{{Tenant.Id}}","scopes":["{{scope}}"],"tenantId":"{{Tenant.TenantId}}","customerId":"{{Guid.Empty}}","iss":"perf","iat":{{iat}},"exp":{{exp}}{{extra}}}""";

    /// <summary>header.payload signed with HMAC-SHA512 under <paramref name="key"/> (our key unless given).</summary>
    private static string SignHs512(string headerJson, string payloadJson, byte[]? key = null)
    {
        var input = B64(headerJson) + "." + B64(payloadJson);
        return input + "." + Base64Url.EncodeToString(HMACSHA512.HashData(key ?? Key, Encoding.ASCII.GetBytes(input)));
    }

    private static long Now => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    [Fact]
    public void HandMadeToken_WithOurHeaderAndKey_IsValid_SoTheForgeriesBelowFailForTheirOneDifference()
    {
        var token = SignHs512("""{"alg":"HS512","typ":"JWT"}""", Claims(Now, Now + 600));
        Assert.Equal(TokenCheck.Valid, Service().Validate(token, refresh: false, out var user));
        Assert.Equal(Tenant.Id, user!.UserId);
        Assert.Equal(TokenCheck.Valid, Service().Validate(SignHs512("""{"alg":"HS512"}""", Claims(Now, Now + 600)), refresh: false, out _));
    }

    [Theory]
    [InlineData("""{"alg":"none","typ":"JWT"}""")]
    [InlineData("""{"alg":"None"}""")]
    [InlineData("""{"alg":"NONE"}""")]
    public void AlgNone_IsRejected_WithOrWithoutASignature(string header)
    {
        var jwt = Service();
        var unsigned = B64(header) + "." + B64(Claims(Now, Now + 600));
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(unsigned + ".", refresh: false, out var user));
        Assert.Null(user);
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(unsigned, refresh: false, out _));
        // Even carrying the HMAC a real HS512 token would have, "none" is not our algorithm.
        var withSignature = unsigned + "." + Base64Url.EncodeToString(HMACSHA512.HashData(Key, Encoding.ASCII.GetBytes(unsigned)));
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(withSignature, refresh: false, out _));
    }

    [Theory]
    [InlineData("HS256")]
    [InlineData("HS384")]
    [InlineData("hs512")]
    [InlineData("Hs512")]
    [InlineData("HS512 ")]
    [InlineData("RS256")]
    [InlineData("ES256")]
    [InlineData("PS512")]
    public void AnyOtherAlgorithm_IsRejected_EvenWhenSignedWithOurKey(string alg)
    {
        // Signed with the right key, so only the header differs: the algorithm is ours to choose (RFC 8725 §3.1).
        var header = $$"""{"alg":"{{alg}}","typ":"JWT"}""";
        var input = B64(header) + "." + B64(Claims(Now, Now + 600));
        var hs256 = input + "." + Base64Url.EncodeToString(HMACSHA256.HashData(Key, Encoding.ASCII.GetBytes(input)));
        var hs512 = input + "." + Base64Url.EncodeToString(HMACSHA512.HashData(Key, Encoding.ASCII.GetBytes(input)));
        Assert.Equal(TokenCheck.Invalid, Service().Validate(hs256, refresh: false, out _));
        Assert.Equal(TokenCheck.Invalid, Service().Validate(hs512, refresh: false, out _));
    }

    [Fact]
    public void Rs256Token_AndHs512SignedWithAPublicKeyAsSecret_AreRejected()
    {
        // The classic confusion: an RSA-signed token, and an HS512 token whose HMAC secret is a public key
        // (what a library that trusts the header's alg would verify with). We hold no public key; any key
        // but ours is refused.
        using var rsa = RSA.Create(2048);
        var input = B64("""{"alg":"RS256","typ":"JWT"}""") + "." + B64(Claims(Now, Now + 600));
        var rs256 = input + "." + Base64Url.EncodeToString(rsa.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1));
        Assert.Equal(TokenCheck.Invalid, Service().Validate(rs256, refresh: false, out _));

        var publicKeyAsSecret = SignHs512("""{"alg":"HS512","typ":"JWT"}""", Claims(Now, Now + 600), Encoding.ASCII.GetBytes(rsa.ExportSubjectPublicKeyInfoPem()));
        Assert.Equal(TokenCheck.Invalid, Service().Validate(publicKeyAsSecret, refresh: false, out _));
    }

    [Theory]
    [InlineData("""{"alg":"HS512","typ":"JWT","crit":["exp"]}""")]
    [InlineData("""{"alg":"HS512","crit":["b64"],"b64":false}""")]
    [InlineData("""{"alg":"HS512","kid":"../../jwt.key"}""")]
    [InlineData("""{"alg":"HS512","jku":"http://evil.example/keys"}""")]
    [InlineData("""{"alg":"HS512","jwk":{"kty":"oct","k":"AAAA"}}""")]
    [InlineData("""{"alg":"HS512","x5u":"http://evil.example/cert"}""")]
    [InlineData("""{"alg":"HS512","alg":"HS512"}""")]
    [InlineData("""{"alg":"HS512","typ":"JWT","typ":"JWT"}""")]
    [InlineData("""{"alg":"HS512","typ":"JWS"}""")]
    [InlineData("""{"typ":"JWT"}""")]
    [InlineData("""{"alg":null}""")]
    [InlineData("""{"alg":["HS512"]}""")]
    [InlineData("""["HS512"]""")]
    [InlineData("""{"alg":"HS512"}{}""")]
    [InlineData("""{"alg":"HS512",""")]
    public void HeaderOtherThanOurs_IsRejected_EvenWhenSignedWithOurKey(string header) =>
        Assert.Equal(TokenCheck.Invalid, Service().Validate(SignHs512(header, Claims(Now, Now + 600)), refresh: false, out _));

    [Fact]
    public void TamperedPayload_IsRejected()
    {
        var jwt = Service();
        var (token, _) = jwt.Issue(Tenant);
        var parts = token.Split('.');
        var claims = Encoding.UTF8.GetString(Base64Url.DecodeFromChars(parts[1]));
        Assert.Contains("TENANT_ADMIN", claims, StringComparison.Ordinal);
        var elevated = parts[0] + "." + B64(claims.Replace("TENANT_ADMIN", "SYS_ADMIN", StringComparison.Ordinal)) + "." + parts[2];
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(elevated, refresh: false, out _));

        var otherTenant = parts[0] + "." + B64(claims.Replace(Tenant.TenantId.ToString(), Guid.NewGuid().ToString(), StringComparison.Ordinal)) + "." + parts[2];
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(otherTenant, refresh: false, out _));

        // One flipped bit of the signature.
        var signature = Base64Url.DecodeFromChars(parts[2]);
        signature[^1] ^= 1;
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(parts[0] + "." + parts[1] + "." + Base64Url.EncodeToString(signature), refresh: false, out _));
        // A truncated signature (a compare that stops at the shorter length would accept a prefix).
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(parts[0] + "." + parts[1] + "." + parts[2][..20], refresh: false, out _));
    }

    [Fact]
    public void ExpiredToken_IsExpired_ButAForgedExpiredToken_IsInvalid()
    {
        var jwt = Service();
        Assert.Equal(TokenCheck.Expired, jwt.Validate(SignHs512("""{"alg":"HS512","typ":"JWT"}""", Claims(Now - 7200, Now - 1)), refresh: false, out var user));
        Assert.Null(user);
        // Expiry is only reported for a token we signed: a forger learns nothing from 11 vs 10.
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(SignHs512("""{"alg":"HS512","typ":"JWT"}""", Claims(Now - 7200, Now - 1), RandomNumberGenerator.GetBytes(64)), refresh: false, out _));
    }

    [Fact]
    public void NotYetValidToken_IsRejected()
    {
        var jwt = Service();
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(SignHs512("""{"alg":"HS512"}""", Claims(Now, Now + 7200, extra: $",\"nbf\":{Now + 3600}")), refresh: false, out _));
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(SignHs512("""{"alg":"HS512"}""", Claims(Now + 3600, Now + 7200)), refresh: false, out _));
        Assert.Equal(TokenCheck.Valid, jwt.Validate(SignHs512("""{"alg":"HS512"}""", Claims(Now, Now + 7200, extra: $",\"nbf\":{Now - 1}")), refresh: false, out _));
    }

    [Theory]
    [InlineData("""{"sub":"t@example.com"}""")]                                    // no exp, no scopes
    [InlineData("""{"scopes":["TENANT_ADMIN"],"iss":"perf","iat":0}""")]           // no exp
    [InlineData("""[1,2,3]""")]
    [InlineData("""null""")]
    [InlineData("""not json""")]
    public void SignedTokenWithMissingOrMalformedClaims_IsRejected(string payload) =>
        Assert.Equal(TokenCheck.Invalid, Service().Validate(SignHs512("""{"alg":"HS512"}""", payload), refresh: false, out _));

    [Fact]
    public void SignedTokenWithWrongIssuer_DuplicateClaims_OrTwoScopes_IsRejected()
    {
        var jwt = Service();
        var claims = Claims(Now, Now + 600);
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(SignHs512("""{"alg":"HS512"}""", claims.Replace("\"iss\":\"perf\"", "\"iss\":\"thingsboard.io\"", StringComparison.Ordinal)), refresh: false, out _));
        // A duplicated claim: which one a parser keeps is not something to depend on.
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(SignHs512("""{"alg":"HS512"}""", claims[..^1] + ",\"scopes\":[\"SYS_ADMIN\"]}"), refresh: false, out _));
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(SignHs512("""{"alg":"HS512"}""", claims.Replace("[\"TENANT_ADMIN\"]", "[\"TENANT_ADMIN\",\"SYS_ADMIN\"]", StringComparison.Ordinal)), refresh: false, out _));
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(SignHs512("""{"alg":"HS512"}""", claims.Replace("TENANT_ADMIN", "ROOT", StringComparison.Ordinal)), refresh: false, out _));
    }

    [Theory]
    [InlineData("")]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData("a.b.c")]
    [InlineData("a.b.c.d")]
    [InlineData("eyJhbGciOiJIUzUxMiJ9..c2ln")]
    [InlineData("eyJhbGciOiJIUzUxMiJ9.e30")]
    [InlineData("eyJhbGciOiJIUzUxMiJ9.e30.***")]
    [InlineData("eyJhbGciOiJIUzUxMiJ9.e30!.c2ln")]
    [InlineData("eyJhbGciOiJIUzUxMiJ9.e30.c2ln.")]
    [InlineData(" eyJhbGciOiJIUzUxMiJ9.e30.c2ln")]
    [InlineData("\u00e9.\u00e9.\u00e9")]
    public void MalformedBase64OrShape_IsRejected(string token) =>
        Assert.Equal(TokenCheck.Invalid, Service().Validate(token, refresh: false, out _));

    [Fact]
    public void NullToken_IsRejected() => Assert.Equal(TokenCheck.Invalid, Service().Validate(null, refresh: false, out _));

    [Fact]
    public void OversizeToken_IsRejectedUnread_EvenWhenSignedWithOurKey()
    {
        var padding = new string('x', JwtService.MaxTokenChars);
        var token = SignHs512("""{"alg":"HS512"}""", Claims(Now, Now + 600, extra: $",\"pad\":\"{padding}\""));
        Assert.True(token.Length > JwtService.MaxTokenChars);
        Assert.Equal(TokenCheck.Invalid, Service().Validate(token, refresh: false, out _));
        Assert.Equal(TokenCheck.Invalid, Service().Validate(new string('A', 1 << 20) + ".e30.c2ln", refresh: false, out _));
    }

    [Fact]
    public void DeeplyNestedPayload_IsRejected_WithoutThrowing()
    {
        var nested = new string('[', 10_000) + new string(']', 10_000);
        Assert.Equal(TokenCheck.Invalid, Service().Validate(SignHs512("""{"alg":"HS512"}""", Claims(Now, Now + 600, extra: $",\"x\":{nested[..1000]}{nested[^1000..]}")), refresh: false, out _));
    }

    [Fact]
    public void RefreshToken_IsRefusedAsAccess_EvenWhenExpired_AndAccessTokenIsRefusedAsRefresh_EvenWhenExpired()
    {
        var clock = new ManualClock(DateTimeOffset.UtcNow);
        var jwt = Service(clock);
        var (access, refresh) = jwt.Issue(Tenant);
        clock.Now += TimeSpan.FromDays(30);
        // Wrong kind answers Invalid before the expiry is looked at, so a caller is never told "expired" for it.
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(refresh, refresh: false, out _));
        Assert.Equal(TokenCheck.Invalid, jwt.Validate(access, refresh: true, out _));
        Assert.Equal(TokenCheck.Expired, jwt.Validate(access, refresh: false, out _));
        Assert.Equal(TokenCheck.Expired, jwt.Validate(refresh, refresh: true, out _));
    }

    [Fact]
    public void IssuedTokens_CarryExactlyOurHeader()
    {
        var (token, refresh) = Service().Issue(Tenant);
        foreach (var t in new[] { token, refresh })
        {
            Assert.Equal("""{"alg":"HS512","typ":"JWT"}""", Encoding.UTF8.GetString(Base64Url.DecodeFromChars(t.Split('.')[0])));
            Assert.True(t.Length < JwtService.MaxTokenChars / 4, $"token of {t.Length} chars");
        }
    }
}
