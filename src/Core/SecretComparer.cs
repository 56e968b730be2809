using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Perf.Core;

/// <summary>
/// Ordinal string equality for secrets (device access tokens, edge secrets) whose time does not depend
/// on where two values of the same length first differ, so a caller cannot find a token character by
/// character by timing the answers. Only the length can show. As a dictionary comparer it keeps the
/// randomized (Marvin) ordinal hash, so a lookup by token stays one hash and one fixed-time compare;
/// it also serves <c>ReadOnlySpan&lt;char&gt;</c> lookups (the MQTT door resolves tokens without a string).
/// </summary>
public sealed class SecretComparer : IEqualityComparer<string>, IAlternateEqualityComparer<ReadOnlySpan<char>, string>
{
    public static SecretComparer Instance { get; } = new();

    private SecretComparer()
    {
    }

    /// <summary>Compares every character of equal-length values (CryptographicOperations.FixedTimeEquals).</summary>
    public static bool FixedTimeEquals(ReadOnlySpan<char> a, ReadOnlySpan<char> b) =>
        CryptographicOperations.FixedTimeEquals(MemoryMarshal.AsBytes(a), MemoryMarshal.AsBytes(b));

    public bool Equals(string? x, string? y) =>
        ReferenceEquals(x, y) || (x is not null && y is not null && FixedTimeEquals(x, y));

    public int GetHashCode(string obj) => string.GetHashCode(obj.AsSpan());

    public bool Equals(ReadOnlySpan<char> alternate, string other) => other is not null && FixedTimeEquals(alternate, other);

    public int GetHashCode(ReadOnlySpan<char> alternate) => string.GetHashCode(alternate);

    public string Create(ReadOnlySpan<char> alternate) => alternate.ToString();
}
