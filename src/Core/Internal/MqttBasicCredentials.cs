using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Perf.Core.Internal;

/// <summary>
/// A device's MQTT basic credentials (the reference platform's <c>MQTT_BASIC</c>): a client id, a user name, or both,
/// and an optional password. The credentials value is the reference's JSON, <c>{"clientId","userName","password"}</c>.
/// The credentials id is the reference's: the lowercase hex SHA3-256 of <c>clientId|userName</c> when both are set,
/// else of the one that is (<c>EncryptionUtil.getSha3Hash</c>); SHA-256 where the platform has no SHA3-256, as for
/// certificates (<see cref="CertificateCredentials"/>).
/// </summary>
internal sealed class MqttBasicCredentials
{
    private const int MaxPartChars = 256;

    private MqttBasicCredentials(string? clientId, string? userName, string? password)
    {
        ClientId = clientId;
        UserName = userName;
        Password = password;
        Id = IdOf(clientId, userName);
    }

    public string? ClientId { get; }

    public string? UserName { get; }

    public string? Password { get; }

    /// <summary>The credentials id (see the class remarks).</summary>
    public string Id { get; }

    /// <summary>The value as stored and answered: the reference's JSON, empty parts left out.</summary>
    public string Value => JsonSerializer.Serialize(new Body { ClientId = ClientId, UserName = UserName, Password = Password }, MqttBasicCredentialsJson.Default.Body);

    /// <summary>
    /// Parses a credentials value, with the reference's rules: a client id or a user name (or both) is required, and a
    /// password needs a user name. <paramref name="error"/> says what is wrong otherwise.
    /// </summary>
    public static MqttBasicCredentials? TryParse(string? value, out string? error)
    {
        error = null;
        Body? body;
        try
        {
            body = string.IsNullOrWhiteSpace(value) ? null : JsonSerializer.Deserialize(value, MqttBasicCredentialsJson.Default.Body);
        }
        catch (JsonException e)
        {
            error = "credentialsValue of MQTT_BASIC is not JSON: " + e.Message;
            return null;
        }

        if (body is null)
        {
            error = "credentialsValue of MQTT_BASIC is required: {\"clientId\":..,\"userName\":..,\"password\":..}";
            return null;
        }

        string? clientId = NullIfEmpty(body.ClientId), userName = NullIfEmpty(body.UserName), password = NullIfEmpty(body.Password);
        if (clientId is null && userName is null)
        {
            error = "Both mqtt client id and user name are empty!";
            return null;
        }

        if (password is not null && userName is null)
        {
            error = "Password cannot be specified along with client id only: set a user name";
            return null;
        }

        if (clientId?.Length > MaxPartChars || userName?.Length > MaxPartChars || password?.Length > MaxPartChars)
        {
            error = $"clientId, userName and password of MQTT_BASIC are at most {MaxPartChars} characters";
            return null;
        }

        return new MqttBasicCredentials(clientId, userName, password);
    }

    /// <summary>
    /// Whether a CONNECT's client id, user name and password are these credentials: each part these have set must be
    /// the CONNECT's (the password compared in fixed time); a part they leave out may be anything.
    /// </summary>
    public bool Accepts(string clientId, string? userName, ReadOnlySpan<byte> password)
    {
        if (ClientId is not null && ClientId != clientId)
        {
            return false;
        }

        if (UserName is not null && UserName != userName)
        {
            return false;
        }

        if (Password is null)
        {
            return true;
        }

        Span<byte> expected = stackalloc byte[Encoding.UTF8.GetMaxByteCount(MaxPartChars)];
        int length = Encoding.UTF8.GetBytes(Password, expected);
        return CryptographicOperations.FixedTimeEquals(expected[..length], password);
    }

    /// <summary>The credentials id a CONNECT with these parts would look up (see the class remarks).</summary>
    public static string IdOf(string? clientId, string? userName) =>
        Hash(clientId is not null && userName is not null ? clientId + "|" + userName : clientId ?? userName ?? "");

    private static string Hash(string text)
    {
        Span<byte> hash = stackalloc byte[32];
        var bytes = Encoding.UTF8.GetBytes(text);
        if (SHA3_256.IsSupported)
        {
            SHA3_256.HashData(bytes, hash);
        }
        else
        {
            SHA256.HashData(bytes, hash);
        }

        return Convert.ToHexStringLower(hash);
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;

    internal sealed class Body
    {
        [JsonPropertyName("clientId")]
        public string? ClientId { get; set; }

        [JsonPropertyName("userName")]
        public string? UserName { get; set; }

        [JsonPropertyName("password")]
        public string? Password { get; set; }
    }
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(MqttBasicCredentials.Body))]
internal sealed partial class MqttBasicCredentialsJson : JsonSerializerContext;
