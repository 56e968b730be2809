namespace Perf.Core.Domain;

public enum Authority : byte
{
    SysAdmin = 1,
    TenantAdmin = 2,
    CustomerUser = 3,
}

/// <summary>A tenant. <see cref="DetailsJson"/> is a JSON object of the reference's contact fields and additionalInfo, as saved.</summary>
public sealed record Tenant(Guid Id, string Title, long CreatedTime, string? DetailsJson = null);

/// <summary>A customer. <see cref="DetailsJson"/> is a JSON object of the reference's contact fields and additionalInfo, as saved.</summary>
public sealed record Customer(Guid Id, Guid TenantId, string Title, long CreatedTime, string? DetailsJson = null);

/// <summary>A user. <see cref="DetailsJson"/> is a JSON object of the reference's phone and additionalInfo, as saved.</summary>
public sealed record User(
    Guid Id,
    Guid TenantId,
    Guid CustomerId,
    string Email,
    Authority Authority,
    string PasswordHash,
    string? FirstName,
    string? LastName,
    long CreatedTime,
    string? DetailsJson = null);

/// <summary>A device. <see cref="CustomerId"/> is <see cref="Guid.Empty"/> when unassigned (the reference's NULL_UID).</summary>
public sealed record Device(
    Guid Id,
    Guid TenantId,
    Guid CustomerId,
    string Name,
    string Type,
    string? Label,
    long CreatedTime,
    string? AdditionalInfoJson,
    bool IsGateway,
    Guid? FirmwareId = null);

/// <summary>
/// A device's credentials: an access token (<see cref="CredentialsId"/> is the token), or an X.509 certificate
/// (<see cref="CredentialsId"/> identifies it, <see cref="CredentialsValue"/> is its DER in base64, as the reference stores it).
/// </summary>
public sealed record DeviceCredentials(Guid DeviceId, string CredentialsType, string CredentialsId, string? CredentialsValue = null);

/// <summary>An edge. <see cref="AdditionalInfoJson"/> is the JSON object saved with it.</summary>
public sealed record Edge(Guid Id, Guid TenantId, Guid CustomerId, string Name, string Type, string RoutingKey, string Secret, long CreatedTime,
    string? Label = null, string? AdditionalInfoJson = null);

public sealed record OtaPackage(Guid Id, Guid TenantId, string Title, string Version, string ChecksumAlgorithm, string Checksum, long Size, long CreatedTime);

public enum AttributeScope : byte
{
    Client = 1,
    Server = 2,
    Shared = 3,
}
