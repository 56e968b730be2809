namespace Perf.Core;

/// <summary>Outcome class of a registry operation.</summary>
public enum RegistryStatus : byte
{
    Ok = 0,
    NotFound,
    /// <summary>Duplicate device name in the tenant, access token, e-mail, or routing key.</summary>
    Conflict,
    Invalid,
}

/// <summary>A registry result: the value on <see cref="RegistryStatus.Ok"/>, otherwise a reason.</summary>
public readonly record struct RegistryResult<T>(RegistryStatus Status, T? Value, string? Error = null)
{
    public bool IsOk => Status == RegistryStatus.Ok;
    public static RegistryResult<T> Ok(T value) => new(RegistryStatus.Ok, value);
    public static RegistryResult<T> Fail(RegistryStatus status, string error) => new(status, default, error);
}

/// <summary>One page of a listing, shaped like the reference's PageData.</summary>
public sealed record PageResult<T>(IReadOnlyList<T> Data, int TotalPages, long TotalElements, bool HasNext);
