using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Perf.Core.Domain;
using Perf.Core.Internal;

namespace Perf.Core;

/// <summary>
/// Tenants, customers, users, devices with their access tokens, edges and OTA packages. Reads are
/// lock-free over concurrent maps; every mutation is a log record and its task completes after the
/// commit, once the change is visible. Uniqueness (device name per tenant, access token, user e-mail,
/// edge routing key, OTA title+version per tenant) is checked when the committed record is applied,
/// on the single apply thread, so concurrent creates cannot both win and replay reaches the same verdict.
/// </summary>
public sealed class EntityRegistry
{
    /// <summary>Credentials type of access tokens.</summary>
    public const string AccessToken = "ACCESS_TOKEN";

    /// <summary>Credentials type of X.509 client certificates (MQTT over TLS).</summary>
    public const string X509Certificate = "X509_CERTIFICATE";
    public const string MqttBasic = "MQTT_BASIC";

    private const int Pbkdf2Iterations = 100_000;
    private const string TokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    private const int MaxTokenChars = 256;

    private readonly UplinkLog _log;
    private readonly TimeProvider _time;
    private readonly string _otaDir;

    private readonly ConcurrentDictionary<Guid, Tenant> _tenants = new();
    private readonly ConcurrentDictionary<Guid, Customer> _customers = new();
    private readonly ConcurrentDictionary<Guid, User> _users = new();
    private readonly ConcurrentDictionary<string, Guid> _usersByEmail = new(StringComparer.OrdinalIgnoreCase);
    private readonly ConcurrentDictionary<Guid, Device> _devices = new();
    private readonly ConcurrentDictionary<(Guid Tenant, string Name), Guid> _devicesByName = new();
    private readonly ConcurrentDictionary<Guid, string> _tokensByDevice = new();
    // The token index compares with SecretComparer: one hash, then a fixed-time compare of the candidate.
    private readonly ConcurrentDictionary<string, Guid> _devicesByToken = new(SecretComparer.Instance);
    private readonly ConcurrentDictionary<string, Guid>.AlternateLookup<ReadOnlySpan<char>> _tokenLookup;

    // A device's credentials other than an access token (X.509 or MQTT basic) by device, and the device of each of
    // their ids. A device has one kind of credentials; ids are unique across all kinds (the reference's credentials_id
    // is unique server-wide). A separate index from the tokens', so a certificate's id (derived from a public
    // certificate) or a basic credentials id never works as an access token. Lookups check the kind (HasCredentialsOfType).
    private readonly ConcurrentDictionary<Guid, DeviceCredentials> _otherCredentialsByDevice = new();
    private readonly ConcurrentDictionary<string, Guid> _devicesByOtherCredentials = new(StringComparer.Ordinal);

    /// <summary>MQTT basic credentials, parsed, by device (also in <see cref="_otherCredentialsByDevice"/>).</summary>
    private readonly ConcurrentDictionary<Guid, MqttBasicCredentials> _mqttBasicByDevice = new();
    private readonly ConcurrentDictionary<string, Guid>.AlternateLookup<ReadOnlySpan<char>> _otherCredentialsLookup;
    private readonly ConcurrentDictionary<Guid, Edge> _edges = new();
    private readonly ConcurrentDictionary<string, Guid> _edgesByRoutingKey = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<Guid, OtaPackage> _ota = new();

    internal EntityRegistry(UplinkLog log, string dataDir, TimeProvider time)
    {
        _log = log;
        _time = time;
        _otaDir = Path.Combine(dataDir, "ota");
        _tokenLookup = _devicesByToken.GetAlternateLookup<ReadOnlySpan<char>>();
        _otherCredentialsLookup = _devicesByOtherCredentials.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Raised on the apply thread (live and replay) after a device was removed.</summary>
    internal event Action<Guid>? DeviceRemoved;

    /// <summary>Raised on the apply thread after a tenant and everything the registry holds of it were removed.</summary>
    public event Action<Guid>? TenantRemoved;

    /// <summary>
    /// Raised on the apply thread after a device was created or changed (edges mirror devices), with the edge the
    /// change came from (<see cref="Guid.Empty"/> for any other source): that edge already has it.
    /// </summary>
    public event Action<Device, Guid>? DeviceSaved;

    /// <summary>Raised on the apply thread after a device's credentials were set.</summary>
    public event Action<DeviceCredentials>? CredentialsSaved;

    /// <summary>
    /// Raised on the apply thread after a device's credentials were replaced by different ones (not when saved again
    /// unchanged): the sessions they opened must end, as the reference closes them ("device credentials updated").
    /// </summary>
    internal event Action<Guid>? CredentialsChanged;

    /// <summary>True when a device's changes are mirrored on apply into records of their own (an edge it is assigned to).</summary>
    internal Func<Guid, bool>? IsMirrored { get; set; }

    private long Now => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>
    /// A device or credentials change is applied on the commit loop, where <see cref="DeviceSaved"/> and
    /// <see cref="CredentialsSaved"/> handlers append derived records (an edge's downlink, committed by the next
    /// group commit). For a mirrored device the caller's acknowledgement also waits for those: a barrier queued
    /// after the apply completes once everything the apply appended is durable, so a kill -9 right after the
    /// REST 200 cannot lose the edge's copy. One commit interval more, only for devices assigned to an edge.
    /// </summary>
    private Task<T> AfterMirrors<T>(Guid deviceId, Task<T> applied)
    {
        return IsMirrored is { } mirrored && mirrored(deviceId) ? _log.ThenDerivedDurable(applied) : applied;
    }

    // ---------------------------------------------------------------- tenants, customers, users

    public Task<RegistryResult<Tenant>> CreateTenantAsync(string title, string? detailsJson = null) =>
        PutTenantAsync(new Tenant(Guid.NewGuid(), title, Now, detailsJson));

    /// <summary>Saves a tenant's title and details (the reference's save with an existing id).</summary>
    public Task<RegistryResult<Tenant>> UpdateTenantAsync(Guid id, string title, string? detailsJson) =>
        _tenants.TryGetValue(id, out var existing)
            ? PutTenantAsync(existing with { Title = title, DetailsJson = detailsJson })
            : Task.FromResult(RegistryResult<Tenant>.Fail(RegistryStatus.NotFound, "tenant not found"));

    private Task<RegistryResult<Tenant>> PutTenantAsync(Tenant tenant)
    {
        if (string.IsNullOrWhiteSpace(tenant.Title))
        {
            return Task.FromResult(RegistryResult<Tenant>.Fail(RegistryStatus.Invalid, "title is required"));
        }
        var w = new RecordWriter(RecordKind.Tenant);
        WriteTenant(ref w, tenant);
        return _log.Append(ref w, () => ApplyTenant(tenant));
    }

    public Tenant? GetTenant(Guid id) => _tenants.GetValueOrDefault(id);

    public IReadOnlyList<Tenant> ListTenants() => [.. _tenants.Values.OrderBy(t => t.CreatedTime)];

    public Task<RegistryResult<Customer>> CreateCustomerAsync(Guid tenantId, string title, string? detailsJson = null) =>
        _tenants.ContainsKey(tenantId)
            ? PutCustomerAsync(new Customer(Guid.NewGuid(), tenantId, title, Now, detailsJson))
            : Task.FromResult(RegistryResult<Customer>.Fail(RegistryStatus.NotFound, "tenant not found"));

    /// <summary>Saves a customer's title and details (the reference's save with an existing id).</summary>
    public Task<RegistryResult<Customer>> UpdateCustomerAsync(Guid id, string title, string? detailsJson) =>
        _customers.TryGetValue(id, out var existing)
            ? PutCustomerAsync(existing with { Title = title, DetailsJson = detailsJson })
            : Task.FromResult(RegistryResult<Customer>.Fail(RegistryStatus.NotFound, "customer not found"));

    private Task<RegistryResult<Customer>> PutCustomerAsync(Customer customer)
    {
        if (string.IsNullOrWhiteSpace(customer.Title))
        {
            return Task.FromResult(RegistryResult<Customer>.Fail(RegistryStatus.Invalid, "title is required"));
        }
        foreach (var existing in _customers.Values)
        {
            if (existing.TenantId == customer.TenantId && existing.Id != customer.Id && string.Equals(existing.Title, customer.Title, StringComparison.Ordinal))
            {
                // The reference's answer; checked before logging, so a log written before this check still replays.
                return Task.FromResult(RegistryResult<Customer>.Fail(RegistryStatus.Conflict, "Customer with such title already exists!"));
            }
        }
        var w = new RecordWriter(RecordKind.Customer);
        WriteCustomer(ref w, customer);
        return _log.Append(ref w, () => ApplyCustomer(customer));
    }

    public Customer? GetCustomer(Guid id) => _customers.GetValueOrDefault(id);

    public IReadOnlyList<Customer> ListCustomers(Guid tenantId) =>
        [.. _customers.Values.Where(c => c.TenantId == tenantId).OrderBy(c => c.CreatedTime)];

    /// <summary>Creates a user; the password is stored as a PBKDF2-SHA256 hash (100,000 iterations).</summary>
    /// <summary>
    /// Creates a user. Without <paramref name="password"/> the user is not active yet, as the reference's users before
    /// their activation: no password logs him in until <see cref="ActivateAsync"/> with his <see cref="ActivationToken"/>.
    /// </summary>
    public Task<RegistryResult<User>> CreateUserAsync(
        Guid tenantId, Guid customerId, string email, Authority authority, string? password, string? firstName = null, string? lastName = null,
        string? detailsJson = null)
    {
        if (authority != Authority.SysAdmin && !_tenants.ContainsKey(tenantId))
        {
            return Task.FromResult(RegistryResult<User>.Fail(RegistryStatus.NotFound, "tenant not found"));
        }
        var credentials = password is null ? ActivationPrefix + NewToken() + NewToken() : HashPassword(password);
        return PutUserAsync(new User(Guid.NewGuid(), tenantId, customerId, email, authority, credentials, firstName, lastName, Now, detailsJson));
    }

    /// <summary>What a user not yet activated holds in place of a password hash: the prefix, then his activation token.</summary>
    private const string ActivationPrefix = "activate$";

    /// <summary>The activation token of a user not yet activated; null once he has a password.</summary>
    public static string? ActivationToken(User user) =>
        user.PasswordHash.StartsWith(ActivationPrefix, StringComparison.Ordinal) ? user.PasswordHash[ActivationPrefix.Length..] : null;

    /// <summary>Activates the user whose activation token this is with his first password; NotFound for any other token.</summary>
    public Task<RegistryResult<User>> ActivateAsync(string activationToken, string password)
    {
        foreach (var user in _users.Values)
        {
            if (ActivationToken(user) is { } token && SecretComparer.FixedTimeEquals(token, activationToken))
            {
                return PutUserAsync(user with { PasswordHash = HashPassword(password) });
            }
        }
        return Task.FromResult(RegistryResult<User>.Fail(RegistryStatus.Invalid, "Unable to find user credentials by activateToken"));
    }

    /// <summary>
    /// Saves a user's e-mail, names and details (the reference's save with an existing id); the password, authority,
    /// tenant and customer are kept.
    /// </summary>
    public Task<RegistryResult<User>> UpdateUserAsync(Guid id, string email, string? firstName, string? lastName, string? detailsJson) =>
        _users.TryGetValue(id, out var existing)
            ? PutUserAsync(existing with { Email = email, FirstName = firstName, LastName = lastName, DetailsJson = detailsJson })
            : Task.FromResult(RegistryResult<User>.Fail(RegistryStatus.NotFound, "user not found"));

    /// <summary>Sets a user's password (stored as a PBKDF2-SHA256 hash).</summary>
    public Task<RegistryResult<User>> SetPasswordAsync(Guid id, string password) =>
        _users.TryGetValue(id, out var existing)
            ? PutUserAsync(existing with { PasswordHash = HashPassword(password) })
            : Task.FromResult(RegistryResult<User>.Fail(RegistryStatus.NotFound, "user not found"));

    private Task<RegistryResult<User>> PutUserAsync(User user)
    {
        if (string.IsNullOrWhiteSpace(user.Email) || !user.Email.Contains('@', StringComparison.Ordinal))
        {
            return Task.FromResult(RegistryResult<User>.Fail(RegistryStatus.Invalid, "a valid email is required"));
        }
        if (_usersByEmail.TryGetValue(user.Email, out var other) && other != user.Id)
        {
            return Task.FromResult(RegistryResult<User>.Fail(RegistryStatus.Conflict, "a user with this email already exists"));
        }
        var w = new RecordWriter(RecordKind.User);
        WriteUser(ref w, user);
        return _log.Append(ref w, () => ApplyUser(user));
    }

    public User? GetUser(Guid id) => _users.GetValueOrDefault(id);

    public User? FindUserByEmail(string email) =>
        _usersByEmail.TryGetValue(email, out var id) ? _users.GetValueOrDefault(id) : null;

    public IReadOnlyList<User> ListUsers(Guid tenantId) =>
        [.. _users.Values.Where(u => u.TenantId == tenantId).OrderBy(u => u.CreatedTime)];

    /// <summary>The user with this e-mail when the password matches; null otherwise.</summary>
    public User? VerifyPassword(string email, string password)
    {
        var user = FindUserByEmail(email);
        if (user is null)
        {
            // Same PBKDF2 work as for a known e-mail, so the answer time does not tell which e-mails exist.
            VerifyPasswordHash(UnknownUserHash.Value, password);
            return null;
        }
        return VerifyPassword(user, password) ? user : null;
    }

    public static bool VerifyPassword(User user, string password)
    {
        ArgumentNullException.ThrowIfNull(user);
        return VerifyPasswordHash(user.PasswordHash, password);
    }

    private static readonly Lazy<string> UnknownUserHash = new(() => HashPassword(Convert.ToBase64String(RandomNumberGenerator.GetBytes(16))));

    private static bool VerifyPasswordHash(string passwordHash, string password)
    {
        var parts = passwordHash.Split('$');
        if (parts.Length != 4 || parts[0] != "pbkdf2-sha256" || !int.TryParse(parts[1], out var iterations))
        {
            return false;
        }
        var salt = Convert.FromBase64String(parts[2]);
        var expected = Convert.FromBase64String(parts[3]);
        var actual = Rfc2898DeriveBytes.Pbkdf2(password, salt, iterations, HashAlgorithmName.SHA256, expected.Length);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }

    internal static string HashPassword(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(16);
        var hash = Rfc2898DeriveBytes.Pbkdf2(password, salt, Pbkdf2Iterations, HashAlgorithmName.SHA256, 32);
        return $"pbkdf2-sha256${Pbkdf2Iterations}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}";
    }

    // ---------------------------------------------------------------- devices

    /// <summary>
    /// Creates a device with an access token (20 random alphanumerics when <paramref name="accessToken"/> is null).
    /// <paramref name="additionalInfoJson"/> is a JSON object; <c>"gateway":true</c> makes it a gateway.
    /// </summary>
    public Task<RegistryResult<Device>> CreateDeviceAsync(
        Guid tenantId, string name, string? type = null, string? label = null, string? additionalInfoJson = null,
        string? accessToken = null, Guid customerId = default, Guid id = default)
    {
        if (id != Guid.Empty && _devices.ContainsKey(id))
        {
            // An id given by the caller (an edge keeps the ids of the devices it creates) names no other device.
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.Conflict, $"device id {id} is taken"));
        }
        if (!_tenants.ContainsKey(tenantId))
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.NotFound, "tenant not found"));
        }
        if (customerId != Guid.Empty && !_customers.ContainsKey(customerId))
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.NotFound, "customer not found"));
        }
        if (Validate(name, additionalInfoJson, accessToken, out var isGateway) is { } error)
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.Invalid, error));
        }
        var device = new Device(id == Guid.Empty ? Guid.NewGuid() : id, tenantId, customerId, name, string.IsNullOrEmpty(type) ? "default" : type,
            label, Now, additionalInfoJson, isGateway);
        return PutDeviceAsync(device, accessToken ?? NewToken());
    }

    /// <summary>
    /// Updates name, type, label and additional info of a device (customer, firmware and token are kept).
    /// <paramref name="origin"/> is the edge the change comes from, if any: <see cref="DeviceSaved"/> passes it on.
    /// </summary>
    public Task<RegistryResult<Device>> UpdateDeviceAsync(Guid id, string name, string? type, string? label, string? additionalInfoJson, Guid origin = default)
    {
        if (!_devices.TryGetValue(id, out var existing))
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.NotFound, "device not found"));
        }
        if (Validate(name, additionalInfoJson, null, out var isGateway) is { } error)
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.Invalid, error));
        }
        var updated = existing with
        {
            Name = name,
            Type = string.IsNullOrEmpty(type) ? "default" : type,
            Label = label,
            AdditionalInfoJson = additionalInfoJson,
            IsGateway = isGateway,
        };
        return PutDeviceAsync(updated, null, origin);
    }

    public Task<RegistryResult<Device>> AssignDeviceToCustomerAsync(Guid deviceId, Guid customerId)
    {
        if (!_devices.TryGetValue(deviceId, out var device))
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.NotFound, "device not found"));
        }
        if (!_customers.TryGetValue(customerId, out var customer) || customer.TenantId != device.TenantId)
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.NotFound, "customer not found"));
        }
        return PutDeviceAsync(device with { CustomerId = customerId }, null);
    }

    public Task<RegistryResult<Device>> UnassignDeviceFromCustomerAsync(Guid deviceId)
    {
        if (!_devices.TryGetValue(deviceId, out var device))
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.NotFound, "device not found"));
        }
        if (device.CustomerId == Guid.Empty)
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.Invalid, "Device isn't assigned to any customer!")); // the reference's answer
        }
        return PutDeviceAsync(device with { CustomerId = Guid.Empty }, null);
    }

    /// <summary>Sets (or with null clears) the device's firmware. The engine also publishes the fw_* shared attributes.</summary>
    internal Task<RegistryResult<Device>> SetFirmwareAsync(Guid deviceId, Guid? otaId)
    {
        if (!_devices.TryGetValue(deviceId, out var device))
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.NotFound, "device not found"));
        }
        if (otaId is { } id && (!_ota.TryGetValue(id, out var package) || package.TenantId != device.TenantId))
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.NotFound, "OTA package not found"));
        }
        return PutDeviceAsync(device with { FirmwareId = otaId }, null);
    }

    /// <summary>
    /// Sets a device's credentials of any type, as the reference's saveDeviceCredentials: ACCESS_TOKEN with
    /// <paramref name="credentialsId"/> the token (none: a new one), X509_CERTIFICATE with <paramref name="credentialsValue"/>
    /// the PEM, MQTT_BASIC with <paramref name="credentialsValue"/> its JSON.
    /// </summary>
    public Task<RegistryResult<DeviceCredentials>> SaveCredentialsAsync(Guid deviceId, string credentialsType, string? credentialsId, string? credentialsValue) =>
        credentialsType switch
        {
            AccessToken => UpdateAccessTokenAsync(deviceId, credentialsId),
            X509Certificate => UpdateX509CertificateAsync(deviceId, credentialsValue),
            MqttBasic => UpdateMqttBasicAsync(deviceId, credentialsValue),
            _ => Task.FromResult(RegistryResult<DeviceCredentials>.Fail(RegistryStatus.Invalid,
                $"credentialsType '{credentialsType}' is not supported; use ACCESS_TOKEN, X509_CERTIFICATE or MQTT_BASIC")),
        };

    /// <summary>Replaces the device's access token (null: generate one).</summary>
    public Task<RegistryResult<DeviceCredentials>> UpdateAccessTokenAsync(Guid deviceId, string? token)
    {
        token ??= NewToken();
        if (!_devices.ContainsKey(deviceId))
        {
            return Task.FromResult(RegistryResult<DeviceCredentials>.Fail(RegistryStatus.NotFound, "device not found"));
        }
        if (token.Length is 0 or > MaxTokenChars)
        {
            return Task.FromResult(RegistryResult<DeviceCredentials>.Fail(RegistryStatus.Invalid, "token must be 1..256 characters"));
        }
        if (CredentialsOwner(token) is { } owner && owner != deviceId)
        {
            return Task.FromResult(RegistryResult<DeviceCredentials>.Fail(RegistryStatus.Conflict, "access token already in use"));
        }
        var w = new RecordWriter(RecordKind.Credentials);
        w.WriteGuid(deviceId);
        w.WriteString(token);
        return AfterMirrors(deviceId, _log.Append(ref w, () => ApplyCredentials(deviceId, token)));
    }

    /// <summary>
    /// Makes an X.509 certificate the device's credentials (its access token stops working). <paramref name="certificate"/>
    /// is PEM or bare base64 of one certificate; the device is then found by <see cref="FindDeviceByCertificate"/>.
    /// </summary>
    public Task<RegistryResult<DeviceCredentials>> UpdateX509CertificateAsync(Guid deviceId, string? certificate)
    {
        if (!_devices.ContainsKey(deviceId))
        {
            return Task.FromResult(RegistryResult<DeviceCredentials>.Fail(RegistryStatus.NotFound, "device not found"));
        }
        if (CertificateCredentials.TryParse(certificate, out var error) is not { } der)
        {
            return Task.FromResult(RegistryResult<DeviceCredentials>.Fail(RegistryStatus.Invalid, error!));
        }
        if (CredentialsOwner(CertificateCredentials.Id(der)) is { } owner && owner != deviceId)
        {
            return Task.FromResult(RegistryResult<DeviceCredentials>.Fail(RegistryStatus.Conflict, "this certificate is already the credentials of another device"));
        }
        var value = Convert.ToBase64String(der);
        var w = new RecordWriter(RecordKind.X509Credentials);
        w.WriteGuid(deviceId);
        w.WriteString(value);
        return AfterMirrors(deviceId, _log.Append(ref w, () => ApplyX509Credentials(deviceId, value)));
    }

    /// <summary>
    /// Makes MQTT basic credentials the device's (its access token or certificate stops working).
    /// <paramref name="value"/> is the reference's JSON, <c>{"clientId","userName","password"}</c>; the device is then
    /// found by <see cref="FindDeviceByMqttBasic"/>.
    /// </summary>
    public Task<RegistryResult<DeviceCredentials>> UpdateMqttBasicAsync(Guid deviceId, string? value)
    {
        if (!_devices.ContainsKey(deviceId))
        {
            return Task.FromResult(RegistryResult<DeviceCredentials>.Fail(RegistryStatus.NotFound, "device not found"));
        }
        if (MqttBasicCredentials.TryParse(value, out var error) is not { } basic)
        {
            return Task.FromResult(RegistryResult<DeviceCredentials>.Fail(RegistryStatus.Invalid, error!));
        }
        if (CredentialsOwner(basic.Id) is { } owner && owner != deviceId)
        {
            return Task.FromResult(RegistryResult<DeviceCredentials>.Fail(RegistryStatus.Conflict, "these MQTT basic credentials are already another device's"));
        }
        var stored = basic.Value;
        var w = new RecordWriter(RecordKind.MqttBasicCredentials);
        w.WriteGuid(deviceId);
        w.WriteString(stored);
        return AfterMirrors(deviceId, _log.Append(ref w, () => ApplyMqttBasicCredentials(deviceId, stored)));
    }

    public Task<RegistryResult<Device>> DeleteDeviceAsync(Guid deviceId)
    {
        if (!_devices.ContainsKey(deviceId))
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.NotFound, "device not found"));
        }
        var w = new RecordWriter(RecordKind.DeviceDelete);
        w.WriteGuid(deviceId);
        return _log.Append(ref w, () => ApplyDeviceDelete(deviceId));
    }

    public Device? GetDevice(Guid id) => _devices.GetValueOrDefault(id);

    public Device? FindDeviceByName(Guid tenantId, string name) =>
        _devicesByName.TryGetValue((tenantId, name), out var id) ? _devices.GetValueOrDefault(id) : null;

    public DeviceCredentials? GetCredentials(Guid deviceId) =>
        _otherCredentialsByDevice.TryGetValue(deviceId, out var certificate) ? certificate
        : _tokensByDevice.TryGetValue(deviceId, out var token) ? new DeviceCredentials(deviceId, AccessToken, token) : null;

    /// <summary>
    /// The device whose X.509 credentials are this certificate (its DER bytes, as presented in a TLS handshake);
    /// null when none. Allocates nothing but a pooled buffer for the hash input.
    /// </summary>
    public Device? FindDeviceByCertificate(ReadOnlySpan<byte> der)
    {
        if (der.IsEmpty || der.Length > CertificateCredentials.MaxDerBytes || _devicesByOtherCredentials.IsEmpty)
        {
            return null;
        }
        Span<char> id = stackalloc char[CertificateCredentials.IdChars];
        CertificateCredentials.WriteId(der, id);
        return _otherCredentialsLookup.TryGetValue(id, out var deviceId) && HasCredentialsOfType(deviceId, X509Certificate) ? _devices.GetValueOrDefault(deviceId) : null;
    }

    /// <summary>
    /// The device whose MQTT basic credentials a CONNECT presents (its client id, UTF-8 user name and password), with
    /// the reference's order: with a user name, the credentials of client id and user name together, then of the user
    /// name alone; without one, of the client id alone. Each part the credentials set must match, and their password if
    /// they have one. Null when none match, at once and without allocating when no device has such credentials.
    /// </summary>
    public Device? FindDeviceByMqttBasic(string clientId, ReadOnlySpan<byte> utf8UserName, ReadOnlySpan<byte> password)
    {
        if (_mqttBasicByDevice.IsEmpty)
        {
            return null;
        }

        if (utf8UserName.IsEmpty)
        {
            return string.IsNullOrEmpty(clientId) ? null : MatchMqttBasic(MqttBasicCredentials.IdOf(clientId, null), clientId, null, password);
        }

        var userName = Encoding.UTF8.GetString(utf8UserName);
        return (string.IsNullOrEmpty(clientId) ? null : MatchMqttBasic(MqttBasicCredentials.IdOf(clientId, userName), clientId, userName, password))
            ?? MatchMqttBasic(MqttBasicCredentials.IdOf(null, userName), clientId, userName, password);
    }

    private Device? MatchMqttBasic(string id, string clientId, string? userName, ReadOnlySpan<byte> password) =>
        _devicesByOtherCredentials.TryGetValue(id, out var deviceId)
        && HasCredentialsOfType(deviceId, MqttBasic)
        && _mqttBasicByDevice.TryGetValue(deviceId, out var basic)
        && basic.Accepts(clientId, userName, password)
            ? _devices.GetValueOrDefault(deviceId)
            : null;

    /// <summary>Whether the device's credentials other than a token are of this type (X.509 or MQTT basic).</summary>
    private bool HasCredentialsOfType(Guid deviceId, string credentialsType) =>
        _otherCredentialsByDevice.TryGetValue(deviceId, out var credentials) && credentials.CredentialsType == credentialsType;

    /// <summary>The device holding credentials id <paramref name="credentialsId"/> (an access token or a certificate id).</summary>
    private Guid? CredentialsOwner(string credentialsId) =>
        _devicesByToken.TryGetValue(credentialsId, out var owner) || _devicesByOtherCredentials.TryGetValue(credentialsId, out owner) ? owner : null;

    public Device? FindDeviceByToken(string token) =>
        _devicesByToken.TryGetValue(token, out var id) ? _devices.GetValueOrDefault(id) : null;

    /// <summary>Resolves a UTF-8 access token without allocating (decodes into a stack buffer).</summary>
    public Device? FindDeviceByToken(ReadOnlySpan<byte> utf8Token)
    {
        if (utf8Token.IsEmpty || utf8Token.Length > MaxTokenChars)
        {
            return null;
        }
        Span<char> chars = stackalloc char[MaxTokenChars];
        if (!Encoding.UTF8.TryGetChars(utf8Token, chars, out var written))
        {
            return null;
        }
        return _tokenLookup.TryGetValue(chars[..written], out var id) ? _devices.GetValueOrDefault(id) : null;
    }

    public int DeviceCount => _devices.Count;

    /// <summary>
    /// A page of a tenant's devices (optionally one customer's). <paramref name="textSearch"/> matches a
    /// name substring, case-insensitively; <paramref name="sortProperty"/> is name, createdTime, type or label.
    /// </summary>
    public PageResult<Device> ListDevices(
        Guid tenantId, Guid? customerId, int pageSize, int page, string? textSearch = null, string? sortProperty = null, bool ascending = true,
        string? type = null)
    {
        pageSize = Math.Max(1, pageSize);
        page = Math.Max(0, page);
        IEnumerable<Device> query = _devices.Values.Where(d => d.TenantId == tenantId);
        if (customerId is { } cid)
        {
            query = query.Where(d => d.CustomerId == cid);
        }
        if (!string.IsNullOrEmpty(textSearch))
        {
            // The reference's DeviceRepository: the name or the label.
            query = query.Where(d => d.Name.Contains(textSearch, StringComparison.OrdinalIgnoreCase) ||
                (d.Label?.Contains(textSearch, StringComparison.OrdinalIgnoreCase) ?? false));
        }
        if (!string.IsNullOrEmpty(type))
        {
            query = query.Where(d => string.Equals(d.Type, type, StringComparison.Ordinal));
        }
        var all = query.ToList();
        Comparison<Device> compare = sortProperty switch
        {
            "name" => (a, b) => string.CompareOrdinal(a.Name, b.Name),
            "type" => (a, b) => string.CompareOrdinal(a.Type, b.Type),
            "label" => (a, b) => string.CompareOrdinal(a.Label, b.Label),
            _ => (a, b) => a.CreatedTime.CompareTo(b.CreatedTime),
        };
        all.Sort(ascending ? compare : (a, b) => compare(b, a));
        var total = all.Count;
        var totalPages = (total + pageSize - 1) / pageSize;
        var data = all.Skip(page * pageSize).Take(pageSize).ToArray();
        return new PageResult<Device>(data, totalPages, total, page + 1 < totalPages);
    }

    internal IEnumerable<Device> AllDevices => _devices.Values;

    /// <summary>The longest device name, as the reference's database column takes it.</summary>
    public const int MaxNameChars = 255;

    private static string? Validate(string name, string? additionalInfoJson, string? token, out bool isGateway)
    {
        isGateway = false;
        if (string.IsNullOrWhiteSpace(name))
        {
            return "name is required";
        }
        if (name.Length > MaxNameChars)
        {
            return $"name length must be equal or less than {MaxNameChars}"; // the reference's column limit
        }
        if (token is not null && token.Length is 0 or > MaxTokenChars)
        {
            return "token must be 1..256 characters";
        }
        if (!string.IsNullOrEmpty(additionalInfoJson))
        {
            try
            {
                using var doc = JsonDocument.Parse(additionalInfoJson);
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                {
                    return "additionalInfo must be a JSON object";
                }
                isGateway = doc.RootElement.TryGetProperty("gateway", out var g) && g.ValueKind == JsonValueKind.True;
            }
            catch (JsonException e)
            {
                return "additionalInfo is not valid JSON: " + e.Message;
            }
        }
        return null;
    }

    private static string NewToken() => RandomNumberGenerator.GetString(TokenAlphabet, 20);

    private Task<RegistryResult<Device>> PutDeviceAsync(Device device, string? token, Guid origin = default)
    {
        if (_devicesByName.TryGetValue((device.TenantId, device.Name), out var other) && other != device.Id)
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.Conflict, "a device with this name already exists"));
        }
        if (token is not null && CredentialsOwner(token) is { } owner && owner != device.Id)
        {
            return Task.FromResult(RegistryResult<Device>.Fail(RegistryStatus.Conflict, "access token already in use"));
        }
        var w = new RecordWriter(RecordKind.Device);
        WriteDevice(ref w, device, token);
        return AfterMirrors(device.Id, _log.Append(ref w, () => ApplyDevice(device, token, origin)));
    }

    // ---------------------------------------------------------------- edges

    public Task<RegistryResult<Edge>> CreateEdgeAsync(
        Guid tenantId, string name, string? type = null, string? routingKey = null, string? secret = null, Guid customerId = default,
        string? label = null, string? additionalInfoJson = null)
    {
        if (!_tenants.ContainsKey(tenantId))
        {
            return Task.FromResult(RegistryResult<Edge>.Fail(RegistryStatus.NotFound, "tenant not found"));
        }
        return PutEdgeAsync(new Edge(Guid.NewGuid(), tenantId, customerId, name, string.IsNullOrEmpty(type) ? "default" : type,
            routingKey ?? Guid.NewGuid().ToString(), secret ?? NewToken(), Now, label, additionalInfoJson));
    }

    /// <summary>Saves an edge's name, type, label, additional info, routing key and secret (the reference's save with an existing id).</summary>
    public Task<RegistryResult<Edge>> UpdateEdgeAsync(Guid id, string name, string? type, string? routingKey, string? secret, string? label, string? additionalInfoJson) =>
        _edges.TryGetValue(id, out var existing)
            ? PutEdgeAsync(existing with
            {
                Name = name,
                Type = string.IsNullOrEmpty(type) ? existing.Type : type,
                RoutingKey = routingKey ?? existing.RoutingKey,
                Secret = secret ?? existing.Secret,
                Label = label,
                AdditionalInfoJson = additionalInfoJson,
            })
            : Task.FromResult(RegistryResult<Edge>.Fail(RegistryStatus.NotFound, "edge not found"));

    /// <summary>Assigns an edge to one of its tenant's customers, or with <see cref="Guid.Empty"/> unassigns it.</summary>
    public Task<RegistryResult<Edge>> SetEdgeCustomerAsync(Guid edgeId, Guid customerId) =>
        _edges.TryGetValue(edgeId, out var existing)
            ? PutEdgeAsync(existing with { CustomerId = customerId })
            : Task.FromResult(RegistryResult<Edge>.Fail(RegistryStatus.NotFound, "edge not found"));

    private Task<RegistryResult<Edge>> PutEdgeAsync(Edge edge)
    {
        if (string.IsNullOrWhiteSpace(edge.Name))
        {
            return Task.FromResult(RegistryResult<Edge>.Fail(RegistryStatus.Invalid, "name is required"));
        }
        if (edge.CustomerId != Guid.Empty && (!_customers.TryGetValue(edge.CustomerId, out var customer) || customer.TenantId != edge.TenantId))
        {
            return Task.FromResult(RegistryResult<Edge>.Fail(RegistryStatus.Invalid, "customer not found"));
        }
        if (_edgesByRoutingKey.TryGetValue(edge.RoutingKey, out var holder) && holder != edge.Id)
        {
            return Task.FromResult(RegistryResult<Edge>.Fail(RegistryStatus.Conflict, "routing key already in use"));
        }
        foreach (var other in _edges.Values)
        {
            if (other.TenantId == edge.TenantId && other.Id != edge.Id && string.Equals(other.Name, edge.Name, StringComparison.Ordinal))
            {
                return Task.FromResult(RegistryResult<Edge>.Fail(RegistryStatus.Conflict, "Edge with such name already exists!"));
            }
        }
        var w = new RecordWriter(RecordKind.Edge);
        WriteEdge(ref w, edge);
        return _log.Append(ref w, () => ApplyEdge(edge));
    }

    /// <summary>Deletes a user (durable).</summary>
    public Task<RegistryResult<User>> DeleteUserAsync(Guid userId) =>
        AppendDelete(RecordKind.UserDelete, userId, _users.ContainsKey(userId), "user not found", ApplyUserDelete);

    /// <summary>Deletes a customer with its users; its devices become unassigned (as the reference does).</summary>
    public Task<RegistryResult<Customer>> DeleteCustomerAsync(Guid customerId) =>
        AppendDelete(RecordKind.CustomerDelete, customerId, _customers.ContainsKey(customerId), "customer not found", ApplyCustomerDelete);

    /// <summary>Deletes a tenant and everything it owns: customers, users, devices (their sessions close), edges, OTA packages.</summary>
    public Task<RegistryResult<Tenant>> DeleteTenantAsync(Guid tenantId) =>
        AppendDelete(RecordKind.TenantDelete, tenantId, _tenants.ContainsKey(tenantId), "tenant not found", ApplyTenantDelete);

    private Task<RegistryResult<T>> AppendDelete<T>(RecordKind kind, Guid id, bool exists, string notFound, Func<Guid, RegistryResult<T>> apply)
    {
        if (!exists)
        {
            return Task.FromResult(RegistryResult<T>.Fail(RegistryStatus.NotFound, notFound));
        }
        var w = new RecordWriter(kind);
        w.WriteGuid(id);
        return _log.Append(ref w, () => apply(id));
    }

    private RegistryResult<User> ApplyUserDelete(Guid userId)
    {
        if (!_users.TryRemove(userId, out var user))
        {
            return RegistryResult<User>.Fail(RegistryStatus.NotFound, "user not found");
        }
        _usersByEmail.TryRemove(new KeyValuePair<string, Guid>(user.Email, userId));
        return RegistryResult<User>.Ok(user);
    }

    private RegistryResult<Customer> ApplyCustomerDelete(Guid customerId)
    {
        if (!_customers.TryRemove(customerId, out var customer))
        {
            return RegistryResult<Customer>.Fail(RegistryStatus.NotFound, "customer not found");
        }
        foreach (var user in _users.Values.Where(u => u.CustomerId == customerId).ToArray())
        {
            ApplyUserDelete(user.Id);
        }
        foreach (var device in _devices.Values.Where(d => d.CustomerId == customerId).ToArray())
        {
            _devices[device.Id] = device with { CustomerId = Guid.Empty };
        }
        foreach (var edge in _edges.Values.Where(e => e.CustomerId == customerId).ToArray())
        {
            _edges[edge.Id] = edge with { CustomerId = Guid.Empty };
        }
        return RegistryResult<Customer>.Ok(customer);
    }

    private RegistryResult<Tenant> ApplyTenantDelete(Guid tenantId)
    {
        if (!_tenants.TryRemove(tenantId, out var tenant))
        {
            return RegistryResult<Tenant>.Fail(RegistryStatus.NotFound, "tenant not found");
        }
        foreach (var device in _devices.Values.Where(d => d.TenantId == tenantId).ToArray())
        {
            ApplyDeviceDelete(device.Id);
        }
        foreach (var customer in _customers.Values.Where(c => c.TenantId == tenantId).ToArray())
        {
            ApplyCustomerDelete(customer.Id);
        }
        foreach (var user in _users.Values.Where(u => u.TenantId == tenantId && u.Authority != Authority.SysAdmin).ToArray())
        {
            ApplyUserDelete(user.Id);
        }
        foreach (var edge in _edges.Values.Where(e => e.TenantId == tenantId).ToArray())
        {
            ApplyEdgeDelete(edge.Id);
        }
        foreach (var package in _ota.Values.Where(o => o.TenantId == tenantId).ToArray())
        {
            _ota.TryRemove(package.Id, out _);
            // Its bytes go too (a replay deletes what a crash right after the delete left).
            File.Delete(OtaPath(package.Id));
        }
        TenantRemoved?.Invoke(tenantId);
        return RegistryResult<Tenant>.Ok(tenant);
    }

    public Edge? GetEdge(Guid id) => _edges.GetValueOrDefault(id);

    public Edge? FindEdgeByRoutingKey(string routingKey) =>
        _edgesByRoutingKey.TryGetValue(routingKey, out var id) ? _edges.GetValueOrDefault(id) : null;

    public IReadOnlyList<Edge> ListEdges(Guid tenantId) =>
        [.. _edges.Values.Where(e => e.TenantId == tenantId).OrderBy(e => e.CreatedTime)];

    public Task<RegistryResult<Edge>> DeleteEdgeAsync(Guid edgeId)
    {
        if (!_edges.ContainsKey(edgeId))
        {
            return Task.FromResult(RegistryResult<Edge>.Fail(RegistryStatus.NotFound, "edge not found"));
        }
        var w = new RecordWriter(RecordKind.EdgeDelete);
        w.WriteGuid(edgeId);
        return _log.Append(ref w, () => ApplyEdgeDelete(edgeId));
    }

    // ---------------------------------------------------------------- OTA packages

    /// <summary>
    /// Stores an OTA package: the bytes go to DataDir/ota/{id}.bin (flushed to disk) before the
    /// record is appended; the checksum is SHA256 (lower-case hex). <paramref name="id"/> lets a caller
    /// that announced the package before its bytes arrived (the REST two-step upload) keep that id.
    /// </summary>
    public async Task<RegistryResult<OtaPackage>> CreateOtaPackageAsync(Guid tenantId, string title, string version, ReadOnlyMemory<byte> data, Guid? id = null)
    {
        if (!_tenants.ContainsKey(tenantId))
        {
            return RegistryResult<OtaPackage>.Fail(RegistryStatus.NotFound, "tenant not found");
        }
        if (string.IsNullOrWhiteSpace(title) || string.IsNullOrWhiteSpace(version))
        {
            return RegistryResult<OtaPackage>.Fail(RegistryStatus.Invalid, "title and version are required");
        }
        if (FindOtaPackage(tenantId, title, version) is not null)
        {
            return RegistryResult<OtaPackage>.Fail(RegistryStatus.Conflict, "an OTA package with this title and version exists");
        }
        if (id is { } requested && (requested == Guid.Empty || _ota.ContainsKey(requested)))
        {
            return RegistryResult<OtaPackage>.Fail(RegistryStatus.Conflict, "an OTA package with this id exists");
        }
        var package = new OtaPackage(id ?? Guid.NewGuid(), tenantId, title, version, "SHA256",
            Convert.ToHexStringLower(SHA256.HashData(data.Span)), data.Length, Now);
        Directory.CreateDirectory(_otaDir);
        var path = OtaPath(package.Id);
        await using (var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, 1, FileOptions.Asynchronous))
        {
            await file.WriteAsync(data);
            file.Flush(flushToDisk: true);
        }
        var w = new RecordWriter(RecordKind.OtaPackage);
        WriteOta(ref w, package);
        return await _log.Append(ref w, () => ApplyOta(package));
    }

    public OtaPackage? GetOtaPackage(Guid id) => _ota.GetValueOrDefault(id);

    public OtaPackage? FindOtaPackage(Guid tenantId, string title, string version) =>
        _ota.Values.FirstOrDefault(p => p.TenantId == tenantId && p.Title == title && p.Version == version);

    public IReadOnlyList<OtaPackage> ListOtaPackages(Guid tenantId) =>
        [.. _ota.Values.Where(p => p.TenantId == tenantId).OrderBy(p => p.CreatedTime)];

    /// <summary>Chunk <paramref name="chunkIndex"/> of size <paramref name="chunkSize"/>; empty past the end.</summary>
    public byte[] ReadOtaChunk(Guid otaId, int chunkSize, int chunkIndex)
    {
        if (!_ota.TryGetValue(otaId, out var package) || chunkSize <= 0 || chunkIndex < 0)
        {
            return [];
        }
        var offset = (long)chunkSize * chunkIndex;
        if (offset >= package.Size)
        {
            return [];
        }
        var buffer = new byte[(int)Math.Min(chunkSize, package.Size - offset)];
        using var handle = File.OpenHandle(OtaPath(otaId));
        var read = 0;
        while (read < buffer.Length)
        {
            var n = RandomAccess.Read(handle, buffer.AsSpan(read), offset + read);
            if (n == 0)
            {
                break;
            }
            read += n;
        }
        return read == buffer.Length ? buffer : buffer[..read];
    }

    private string OtaPath(Guid id) => Path.Combine(_otaDir, id.ToString("N") + ".bin");

    // ---------------------------------------------------------------- apply (live after commit, and replay)

    private RegistryResult<Tenant> ApplyTenant(Tenant tenant)
    {
        _tenants[tenant.Id] = tenant;
        return RegistryResult<Tenant>.Ok(tenant);
    }

    private RegistryResult<Customer> ApplyCustomer(Customer customer)
    {
        _customers[customer.Id] = customer;
        return RegistryResult<Customer>.Ok(customer);
    }

    private RegistryResult<User> ApplyUser(User user)
    {
        if (_usersByEmail.TryGetValue(user.Email, out var other) && other != user.Id)
        {
            return RegistryResult<User>.Fail(RegistryStatus.Conflict, "a user with this email already exists");
        }
        if (_users.TryGetValue(user.Id, out var old) && !string.Equals(old.Email, user.Email, StringComparison.OrdinalIgnoreCase))
        {
            _usersByEmail.TryRemove(old.Email, out _);
        }
        _users[user.Id] = user;
        _usersByEmail[user.Email] = user.Id;
        return RegistryResult<User>.Ok(user);
    }

    private RegistryResult<Device> ApplyDevice(Device device, string? token, Guid origin = default)
    {
        if (_devicesByName.TryGetValue((device.TenantId, device.Name), out var other) && other != device.Id)
        {
            return RegistryResult<Device>.Fail(RegistryStatus.Conflict, "a device with this name already exists");
        }
        if (token is not null && CredentialsOwner(token) is { } owner && owner != device.Id)
        {
            return RegistryResult<Device>.Fail(RegistryStatus.Conflict, "access token already in use");
        }
        if (_devices.TryGetValue(device.Id, out var old) && old.Name != device.Name)
        {
            _devicesByName.TryRemove((old.TenantId, old.Name), out _);
        }
        _devices[device.Id] = device;
        _devicesByName[(device.TenantId, device.Name)] = device.Id;
        if (token is not null)
        {
            ApplyCredentials(device.Id, token);
        }
        DeviceSaved?.Invoke(device, origin);
        return RegistryResult<Device>.Ok(device);
    }

    private RegistryResult<DeviceCredentials> ApplyCredentials(Guid deviceId, string token)
    {
        if (!_devices.ContainsKey(deviceId))
        {
            return RegistryResult<DeviceCredentials>.Fail(RegistryStatus.NotFound, "device not found");
        }
        var before = GetCredentials(deviceId);
        if (CredentialsOwner(token) is { } owner && owner != deviceId)
        {
            return RegistryResult<DeviceCredentials>.Fail(RegistryStatus.Conflict, "access token already in use");
        }
        if (_tokensByDevice.TryGetValue(deviceId, out var old) && old != token)
        {
            _devicesByToken.TryRemove(old, out _);
        }
        RemoveOtherCredentials(deviceId);
        _tokensByDevice[deviceId] = token;
        _devicesByToken[token] = deviceId;
        var credentials = new DeviceCredentials(deviceId, AccessToken, token);
        Saved(before, credentials);
        return RegistryResult<DeviceCredentials>.Ok(credentials);
    }

    private RegistryResult<DeviceCredentials> ApplyX509Credentials(Guid deviceId, string value)
    {
        if (!_devices.ContainsKey(deviceId))
        {
            return RegistryResult<DeviceCredentials>.Fail(RegistryStatus.NotFound, "device not found");
        }
        var before = GetCredentials(deviceId);
        // The id is recomputed from the stored certificate (not stored), so it follows the platform's hash (see CertificateCredentials).
        var id = CertificateCredentials.Id(Convert.FromBase64String(value));
        if (CredentialsOwner(id) is { } owner && owner != deviceId)
        {
            return RegistryResult<DeviceCredentials>.Fail(RegistryStatus.Conflict, "this certificate is already the credentials of another device");
        }
        if (_tokensByDevice.TryRemove(deviceId, out var token))
        {
            _devicesByToken.TryRemove(token, out _);
        }
        RemoveOtherCredentials(deviceId);
        var credentials = new DeviceCredentials(deviceId, X509Certificate, id, value);
        _otherCredentialsByDevice[deviceId] = credentials;
        _devicesByOtherCredentials[id] = deviceId;
        Saved(before, credentials);
        return RegistryResult<DeviceCredentials>.Ok(credentials);
    }

    private RegistryResult<DeviceCredentials> ApplyMqttBasicCredentials(Guid deviceId, string value)
    {
        if (!_devices.ContainsKey(deviceId))
        {
            return RegistryResult<DeviceCredentials>.Fail(RegistryStatus.NotFound, "device not found");
        }
        var before = GetCredentials(deviceId);
        if (MqttBasicCredentials.TryParse(value, out var error) is not { } basic)
        {
            return RegistryResult<DeviceCredentials>.Fail(RegistryStatus.Invalid, error!);
        }
        if (CredentialsOwner(basic.Id) is { } owner && owner != deviceId)
        {
            return RegistryResult<DeviceCredentials>.Fail(RegistryStatus.Conflict, "these MQTT basic credentials are already another device's");
        }
        if (_tokensByDevice.TryRemove(deviceId, out var token))
        {
            _devicesByToken.TryRemove(token, out _);
        }
        RemoveOtherCredentials(deviceId);
        var credentials = new DeviceCredentials(deviceId, MqttBasic, basic.Id, value);
        _mqttBasicByDevice[deviceId] = basic;
        _otherCredentialsByDevice[deviceId] = credentials;
        _devicesByOtherCredentials[basic.Id] = deviceId;
        Saved(before, credentials);
        return RegistryResult<DeviceCredentials>.Ok(credentials);
    }

    /// <summary>Raises <see cref="CredentialsSaved"/>, and <see cref="CredentialsChanged"/> when they replace other credentials.</summary>
    private void Saved(DeviceCredentials? before, DeviceCredentials credentials)
    {
        CredentialsSaved?.Invoke(credentials);
        if (before is not null && before != credentials)
        {
            CredentialsChanged?.Invoke(credentials.DeviceId);
        }
    }

    /// <summary>Removes the device's credentials other than a token: a certificate or MQTT basic credentials.</summary>
    private void RemoveOtherCredentials(Guid deviceId)
    {
        if (_otherCredentialsByDevice.TryRemove(deviceId, out var old))
        {
            _devicesByOtherCredentials.TryRemove(old.CredentialsId, out _);
        }
        _mqttBasicByDevice.TryRemove(deviceId, out _);
    }

    private RegistryResult<Device> ApplyDeviceDelete(Guid deviceId)
    {
        if (!_devices.TryRemove(deviceId, out var device))
        {
            return RegistryResult<Device>.Fail(RegistryStatus.NotFound, "device not found");
        }
        _devicesByName.TryRemove((device.TenantId, device.Name), out _);
        if (_tokensByDevice.TryRemove(deviceId, out var token))
        {
            _devicesByToken.TryRemove(token, out _);
        }
        RemoveOtherCredentials(deviceId);
        DeviceRemoved?.Invoke(deviceId);
        return RegistryResult<Device>.Ok(device);
    }

    private RegistryResult<Edge> ApplyEdge(Edge edge)
    {
        if (_edgesByRoutingKey.TryGetValue(edge.RoutingKey, out var other) && other != edge.Id)
        {
            return RegistryResult<Edge>.Fail(RegistryStatus.Conflict, "routing key already in use");
        }
        if (_edges.TryGetValue(edge.Id, out var old) && old.RoutingKey != edge.RoutingKey)
        {
            _edgesByRoutingKey.TryRemove(old.RoutingKey, out _);
        }
        _edges[edge.Id] = edge;
        _edgesByRoutingKey[edge.RoutingKey] = edge.Id;
        return RegistryResult<Edge>.Ok(edge);
    }

    private RegistryResult<Edge> ApplyEdgeDelete(Guid edgeId)
    {
        if (!_edges.TryRemove(edgeId, out var edge))
        {
            return RegistryResult<Edge>.Fail(RegistryStatus.NotFound, "edge not found");
        }
        _edgesByRoutingKey.TryRemove(edge.RoutingKey, out _);
        return RegistryResult<Edge>.Ok(edge);
    }

    private RegistryResult<OtaPackage> ApplyOta(OtaPackage package)
    {
        if (FindOtaPackage(package.TenantId, package.Title, package.Version) is { } other && other.Id != package.Id)
        {
            return RegistryResult<OtaPackage>.Fail(RegistryStatus.Conflict, "an OTA package with this title and version exists");
        }
        _ota[package.Id] = package;
        return RegistryResult<OtaPackage>.Ok(package);
    }

    internal void Replay(RecordKind kind, ref RecordReader r)
    {
        switch (kind)
        {
            case RecordKind.Tenant:
                // The details came later: a record written before them ends after the created time.
                ApplyTenant(new Tenant(r.ReadGuid(), r.ReadString(), r.ReadInt64(), r.End ? null : r.ReadNullableString()));
                break;
            case RecordKind.Customer:
                ApplyCustomer(new Customer(r.ReadGuid(), r.ReadGuid(), r.ReadString(), r.ReadInt64(), r.End ? null : r.ReadNullableString()));
                break;
            case RecordKind.User:
                ApplyUser(new User(r.ReadGuid(), r.ReadGuid(), r.ReadGuid(), r.ReadString(), (Authority)r.ReadByte(), r.ReadString(),
                    r.ReadNullableString(), r.ReadNullableString(), r.ReadInt64(), r.End ? null : r.ReadNullableString()));
                break;
            case RecordKind.Device:
            {
                var device = new Device(r.ReadGuid(), r.ReadGuid(), r.ReadGuid(), r.ReadString(), r.ReadString(), r.ReadNullableString(),
                    r.ReadInt64(), r.ReadNullableString(), r.ReadBool(), r.ReadBool() ? r.ReadGuid() : null);
                ApplyDevice(device, r.ReadNullableString());
                break;
            }
            case RecordKind.DeviceDelete:
                ApplyDeviceDelete(r.ReadGuid());
                break;
            case RecordKind.TenantDelete:
                ApplyTenantDelete(r.ReadGuid());
                break;
            case RecordKind.CustomerDelete:
                ApplyCustomerDelete(r.ReadGuid());
                break;
            case RecordKind.UserDelete:
                ApplyUserDelete(r.ReadGuid());
                break;
            case RecordKind.Credentials:
                ApplyCredentials(r.ReadGuid(), r.ReadString());
                break;
            case RecordKind.X509Credentials:
                ApplyX509Credentials(r.ReadGuid(), r.ReadString());
                break;
            case RecordKind.MqttBasicCredentials:
                ApplyMqttBasicCredentials(r.ReadGuid(), r.ReadString());
                break;
            case RecordKind.Edge:
                // Label and additional info came later: a record written before them ends after the created time.
                ApplyEdge(new Edge(r.ReadGuid(), r.ReadGuid(), r.ReadGuid(), r.ReadString(), r.ReadString(), r.ReadString(), r.ReadString(), r.ReadInt64(),
                    r.End ? null : r.ReadNullableString(), r.End ? null : r.ReadNullableString()));
                break;
            case RecordKind.EdgeDelete:
                ApplyEdgeDelete(r.ReadGuid());
                break;
            case RecordKind.OtaPackage:
                ApplyOta(new OtaPackage(r.ReadGuid(), r.ReadGuid(), r.ReadString(), r.ReadString(), r.ReadString(), r.ReadString(), r.ReadInt64(), r.ReadInt64()));
                break;
            default:
                throw new InvalidDataException($"Record kind {kind} is not a registry record.");
        }
    }

    /// <summary>The keys of the last whole <see cref="WriteState"/>, retained by a checkpoint where nothing changed.</summary>
    private readonly CheckpointKeys _stateKeys = new();

    /// <summary>
    /// Emits records that rebuild the registry (parents before children); when nothing that can change it was
    /// applied since the last call that wrote it (<paramref name="changed"/> false), retains those keys instead.
    /// </summary>
    internal void WriteState(StateStore state, bool changed)
    {
        if (_stateKeys.RetainIfUnchanged(state, changed))
        {
            return;
        }
        foreach (var t in _tenants.Values)
        {
            var w = new RecordWriter(RecordKind.Tenant);
            WriteTenant(ref w, t);
            _stateKeys.Write(state, StateKeys.Tenant(t.Id), ref w);
        }
        foreach (var c in _customers.Values)
        {
            var w = new RecordWriter(RecordKind.Customer);
            WriteCustomer(ref w, c);
            _stateKeys.Write(state, StateKeys.Customer(c.Id), ref w);
        }
        foreach (var u in _users.Values)
        {
            var w = new RecordWriter(RecordKind.User);
            WriteUser(ref w, u);
            _stateKeys.Write(state, StateKeys.User(u.Id), ref w);
        }
        foreach (var d in _devices.Values)
        {
            var w = new RecordWriter(RecordKind.Device);
            WriteDevice(ref w, d, _tokensByDevice.GetValueOrDefault(d.Id));
            _stateKeys.Write(state, StateKeys.Device(d.Id), ref w);
        }
        foreach (var c in _otherCredentialsByDevice.Values)
        {
            // Loaded in the store's second pass, after the devices it refers to. One key per device: a device has one
            // kind of credentials besides a token.
            var w = new RecordWriter(c.CredentialsType == MqttBasic ? RecordKind.MqttBasicCredentials : RecordKind.X509Credentials);
            w.WriteGuid(c.DeviceId);
            w.WriteString(c.CredentialsValue!);
            _stateKeys.Write(state, StateKeys.X509Credentials(c.DeviceId), ref w);
        }
        foreach (var e in _edges.Values)
        {
            var w = new RecordWriter(RecordKind.Edge);
            WriteEdge(ref w, e);
            _stateKeys.Write(state, StateKeys.Edge(e.Id), ref w);
        }
        foreach (var p in _ota.Values)
        {
            var w = new RecordWriter(RecordKind.OtaPackage);
            WriteOta(ref w, p);
            _stateKeys.Write(state, StateKeys.OtaPackage(p.Id), ref w);
        }
        _stateKeys.Done();
    }

    private static void WriteTenant(ref RecordWriter w, Tenant t)
    {
        w.WriteGuid(t.Id);
        w.WriteString(t.Title);
        w.WriteInt64(t.CreatedTime);
        w.WriteNullableString(t.DetailsJson);
    }

    private static void WriteCustomer(ref RecordWriter w, Customer c)
    {
        w.WriteGuid(c.Id);
        w.WriteGuid(c.TenantId);
        w.WriteString(c.Title);
        w.WriteInt64(c.CreatedTime);
        w.WriteNullableString(c.DetailsJson);
    }

    private static void WriteUser(ref RecordWriter w, User u)
    {
        w.WriteGuid(u.Id);
        w.WriteGuid(u.TenantId);
        w.WriteGuid(u.CustomerId);
        w.WriteString(u.Email);
        w.WriteByte((byte)u.Authority);
        w.WriteString(u.PasswordHash);
        w.WriteNullableString(u.FirstName);
        w.WriteNullableString(u.LastName);
        w.WriteInt64(u.CreatedTime);
        w.WriteNullableString(u.DetailsJson);
    }

    private static void WriteDevice(ref RecordWriter w, Device d, string? token)
    {
        w.WriteGuid(d.Id);
        w.WriteGuid(d.TenantId);
        w.WriteGuid(d.CustomerId);
        w.WriteString(d.Name);
        w.WriteString(d.Type);
        w.WriteNullableString(d.Label);
        w.WriteInt64(d.CreatedTime);
        w.WriteNullableString(d.AdditionalInfoJson);
        w.WriteBool(d.IsGateway);
        w.WriteBool(d.FirmwareId.HasValue);
        if (d.FirmwareId is { } fw)
        {
            w.WriteGuid(fw);
        }
        w.WriteNullableString(token);
    }

    private static void WriteEdge(ref RecordWriter w, Edge e)
    {
        w.WriteGuid(e.Id);
        w.WriteGuid(e.TenantId);
        w.WriteGuid(e.CustomerId);
        w.WriteString(e.Name);
        w.WriteString(e.Type);
        w.WriteString(e.RoutingKey);
        w.WriteString(e.Secret);
        w.WriteInt64(e.CreatedTime);
        w.WriteNullableString(e.Label);
        w.WriteNullableString(e.AdditionalInfoJson);
    }

    private static void WriteOta(ref RecordWriter w, OtaPackage p)
    {
        w.WriteGuid(p.Id);
        w.WriteGuid(p.TenantId);
        w.WriteString(p.Title);
        w.WriteString(p.Version);
        w.WriteString(p.ChecksumAlgorithm);
        w.WriteString(p.Checksum);
        w.WriteInt64(p.Size);
        w.WriteInt64(p.CreatedTime);
    }
}
