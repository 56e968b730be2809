using System.Collections.Concurrent;
using System.Text;

namespace Perf.Core.Tests;

public class SecretComparerTests
{
    [Theory]
    [InlineData("A1b2C3d4E5f6G7h8I9j0", "A1b2C3d4E5f6G7h8I9j0", true)]
    [InlineData("A1b2C3d4E5f6G7h8I9j0", "A1b2C3d4E5f6G7h8I9j1", false)] // last character
    [InlineData("A1b2C3d4E5f6G7h8I9j0", "B1b2C3d4E5f6G7h8I9j0", false)] // first character
    [InlineData("A1b2C3d4E5f6G7h8I9j0", "a1b2C3d4E5f6G7h8I9j0", false)] // case matters
    [InlineData("A1b2C3d4E5f6G7h8I9j0", "A1b2C3d4E5", false)]           // a prefix is not a match
    [InlineData("A1b2C3d4E5", "A1b2C3d4E5f6G7h8I9j0", false)]
    [InlineData("", "", true)]
    [InlineData("é", "e\u0301", false)]                                   // ordinal, no normalization
    public void Equals_IsOrdinal_ForStringsAndSpans(string a, string b, bool equal)
    {
        Assert.Equal(equal, SecretComparer.Instance.Equals(a, b));
        Assert.Equal(equal, SecretComparer.Instance.Equals(a.AsSpan(), b));
        Assert.Equal(equal, SecretComparer.FixedTimeEquals(a, b));
        Assert.Equal(string.Equals(a, b, StringComparison.Ordinal), equal);
    }

    [Fact]
    public void Nulls_AreOnlyEqualToNull()
    {
        Assert.True(SecretComparer.Instance.Equals(null, null));
        Assert.False(SecretComparer.Instance.Equals("x", null));
        Assert.False(SecretComparer.Instance.Equals(null, "x"));
    }

    [Fact]
    public void HashOfSpan_EqualsHashOfString_SoSpanLookupsFindStringKeys()
    {
        var dictionary = new ConcurrentDictionary<string, int>(SecretComparer.Instance) { ["A1b2C3d4E5f6G7h8I9j0"] = 7 };
        var lookup = dictionary.GetAlternateLookup<ReadOnlySpan<char>>();
        Span<char> chars = stackalloc char[20];
        Assert.Equal(20, Encoding.UTF8.GetChars("A1b2C3d4E5f6G7h8I9j0"u8, chars));
        Assert.Equal(SecretComparer.Instance.GetHashCode("A1b2C3d4E5f6G7h8I9j0"), SecretComparer.Instance.GetHashCode((ReadOnlySpan<char>)chars));
        Assert.True(lookup.TryGetValue(chars, out var value));
        Assert.Equal(7, value);
        Assert.False(lookup.TryGetValue("A1b2C3d4E5f6G7h8I9j", out _));
        Assert.False(dictionary.ContainsKey("a1b2C3d4E5f6G7h8I9j0"));
    }

    [Fact]
    public async Task DeviceTokenIndex_UsesIt_CaseSensitiveAndNoPrefixMatches()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, token) = await Engines.CreateDeviceAsync(engine);
        Assert.Equal(device.Id, engine.DeviceApi.Authenticate(Encoding.UTF8.GetBytes(token))?.Id);
        Assert.Equal(device.Id, engine.DeviceApi.Authenticate(token)?.Id);
        Assert.Null(engine.DeviceApi.Authenticate(token[..^1]));
        Assert.Null(engine.DeviceApi.Authenticate(token + "x"));
        Assert.Null(engine.DeviceApi.Authenticate(Encoding.UTF8.GetBytes(SwapCase(token))));
    }

    [Fact]
    public async Task Login_WithUnknownEmail_AndWithWrongPassword_BothAnswerNull()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var tenant = (await engine.Registry.CreateTenantAsync("t")).Value!.Id;
        Assert.True((await engine.Registry.CreateUserAsync(tenant, Guid.Empty, "a@example.com", Domain.Authority.TenantAdmin, "right")).IsOk);
        Assert.NotNull(engine.Registry.VerifyPassword("a@example.com", "right"));
        Assert.NotNull(engine.Registry.VerifyPassword("A@EXAMPLE.COM", "right"));
        Assert.Null(engine.Registry.VerifyPassword("a@example.com", "Right"));
        Assert.Null(engine.Registry.VerifyPassword("a@example.com", "righ"));
        Assert.Null(engine.Registry.VerifyPassword("nobody@example.com", "right"));
    }

    private static string SwapCase(string s) =>
        string.Concat(s.Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)));
}
