using System.Security.Cryptography;
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
        Assert.Equal(expected, JwtAuthFilter.ReadBearer(header));
}
