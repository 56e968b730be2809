using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Core.Internal;

/// <summary>
/// The transport-neutral device facade. Each uplink is parsed, or for telemetry copied, synchronously (the door may
/// release its buffer when the call returns), appended to the log, and its task completes after the commit; the
/// change is applied and fanned out before the task completes.
/// </summary>
internal sealed class DeviceApi(
    CoreOptions options, KeyTable keys, EntityRegistry registry, AttributeService attributes, TelemetryService telemetry,
    RpcService rpc, TimeProvider time) : IDeviceApi
{
    private long Now => time.GetUtcNow().ToUnixTimeMilliseconds();

    public Device? Authenticate(ReadOnlySpan<byte> utf8Token) => registry.FindDeviceByToken(utf8Token);

    public Device? Authenticate(string token) => registry.FindDeviceByToken(token);

    public Device? AuthenticateCertificate(ReadOnlySpan<byte> certificateDer) => registry.FindDeviceByCertificate(certificateDer);

    public Device? AuthenticateMqttBasic(string clientId, ReadOnlySpan<byte> utf8UserName, ReadOnlySpan<byte> password) =>
        registry.FindDeviceByMqttBasic(clientId, utf8UserName, password);

    public ValueTask<UplinkResult> PostTelemetryAsync(Device device, ReadOnlySequence<byte> json)
    {
        if (json.Length > options.MaxPayloadSize)
        {
            return new(CoreMetrics.Telemetry(new UplinkResult(UplinkStatus.TooLarge, $"payload exceeds {options.MaxPayloadSize} bytes")));
        }
        // Pooled: the uplink's list, record buffer and completion are reused once the door has read the result. The
        // payload is parsed in the round, while its commit is on the disk (RecordKind.TelemetryJson).
        return telemetry.SaveUplink(device.Id, telemetry.RentUplink(), json, Now, keys);
    }

    public ValueTask<UplinkResult> PostAttributesAsync(Device device, ReadOnlySequence<byte> json)
    {
        if (json.Length > options.MaxPayloadSize)
        {
            return new(CoreMetrics.Attributes(new UplinkResult(UplinkStatus.TooLarge, $"payload exceeds {options.MaxPayloadSize} bytes")));
        }
        var entries = new List<KvEntry>();
        if (!TelemetryJsonParser.TryParseAttributes(json, keys, entries, out var error))
        {
            return new(CoreMetrics.Attributes(new UplinkResult(UplinkStatus.BadPayload, error.Message)));
        }
        return entries.Count == 0 ? new(CoreMetrics.Attributes(UplinkResult.Success)) : Await(attributes.SaveAsync(device.Id, AttributeScope.Client, entries), attributes: true);
    }

    private static async ValueTask<UplinkResult> Await(Task<bool> write, bool attributes)
    {
        UplinkResult result;
        try
        {
            result = await write ? UplinkResult.Success : new UplinkResult(UplinkStatus.NotFound, "device not found");
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            result = new UplinkResult(UplinkStatus.Unavailable, "storage unavailable");
        }

        return attributes ? CoreMetrics.Attributes(result) : CoreMetrics.Telemetry(result);
    }

    public ValueTask<AttributesReply> RequestAttributesAsync(Device device, IReadOnlyList<string>? clientKeys, IReadOnlyList<string>? sharedKeys, bool onlyShared = false)
    {
        bool anyClient = clientKeys is { Count: > 0 };
        bool anyShared = sharedKeys is { Count: > 0 };
        IReadOnlyList<AttributeKv> client = onlyShared || (anyShared && !anyClient) ? [] : attributes.Get(device.Id, AttributeScope.Client, anyClient ? clientKeys : null);
        IReadOnlyList<AttributeKv> shared = anyClient && !anyShared && !onlyShared ? [] : attributes.Get(device.Id, AttributeScope.Shared, anyShared ? sharedKeys : null);
        return new(new AttributesReply(client, shared));
    }

    public ValueTask<UplinkResult> RpcReplyAsync(Device device, int requestId, ReadOnlySequence<byte> json)
    {
        if (json.Length > options.MaxPayloadSize)
        {
            return new(new UplinkResult(UplinkStatus.TooLarge, $"payload exceeds {options.MaxPayloadSize} bytes"));
        }
        var body = Encoding.UTF8.GetString(json);
        var completion = rpc.CompleteReplyAsync(device.Id, requestId, body);
        return completion.IsCompletedSuccessfully ? new(Outcome(completion.Result, requestId)) : AwaitReplyAsync(completion, requestId);
    }

    private static async ValueTask<UplinkResult> AwaitReplyAsync(ValueTask<bool> completion, int requestId)
    {
        try
        {
            return Outcome(await completion, requestId);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new UplinkResult(UplinkStatus.Unavailable, "storage unavailable");
        }
    }

    private static UplinkResult Outcome(bool completed, int requestId) =>
        completed ? UplinkResult.Success : new UplinkResult(UplinkStatus.NotFound, $"no pending RPC {requestId}");

    public void RpcDelivered(Device device, int requestId) => rpc.OnDelivered(device.Id, requestId);

    public ValueTask<ClientRpcResult> ClientRpcAsync(Device device, ReadOnlySequence<byte> json, CancellationToken cancellationToken)
    {
        if (json.Length > options.MaxPayloadSize)
        {
            return new(new ClientRpcResult(new UplinkResult(UplinkStatus.TooLarge, $"payload exceeds {options.MaxPayloadSize} bytes"), null));
        }
        string method;
        string paramsJson;
        try
        {
            var reader = new Utf8JsonReader(json);
            using var doc = JsonDocument.ParseValue(ref reader);
            if (doc.RootElement.ValueKind != JsonValueKind.Object ||
                !doc.RootElement.TryGetProperty("method", out var m) || m.ValueKind != JsonValueKind.String ||
                string.IsNullOrEmpty(m.GetString()))
            {
                return new(new ClientRpcResult(new UplinkResult(UplinkStatus.BadPayload, "expected {\"method\":string,\"params\":...}"), null));
            }
            method = m.GetString()!;
            paramsJson = doc.RootElement.TryGetProperty("params", out var p) ? p.GetRawText() : "{}";
        }
        catch (JsonException e)
        {
            return new(new ClientRpcResult(new UplinkResult(UplinkStatus.BadPayload, e.Message), null));
        }

        switch (method)
        {
            case "getCurrentTime":
                return new(new ClientRpcResult(UplinkResult.Success,
                    "{\"currentTime\":" + Now.ToString(CultureInfo.InvariantCulture) + "}"));
            case "getSessionLimits":
                return new(new ClientRpcResult(UplinkResult.Success, SessionLimitsJson(device.IsGateway)));
        }

        if (rpc.ClientRpcHandler is not { } handler)
        {
            return new(new ClientRpcResult(UplinkResult.Success,
                "{\"error\":" + JsonString("no handler for method '" + method + "'") + "}"));
        }
        return CallHandlerAsync(handler, device, method, paramsJson, cancellationToken);
    }

    private async ValueTask<ClientRpcResult> CallHandlerAsync(ClientRpcHandler handler, Device device, string method, string paramsJson, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(options.ClientRpcTimeoutMs);
        try
        {
            var reply = await handler(device, method, paramsJson, timeout.Token).AsTask().WaitAsync(timeout.Token);
            return new ClientRpcResult(UplinkResult.Success, reply);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return new ClientRpcResult(new UplinkResult(UplinkStatus.Timeout, "client RPC timed out"), null);
        }
    }

    /// <summary>A JSON string literal; relaxed escaping keeps quotes like ' readable for devices.</summary>
    private static string JsonString(string value) =>
        "\"" + JsonEncodedText.Encode(value, JavaScriptEncoder.UnsafeRelaxedJsonEscaping).ToString() + "\"";

    /// <summary>
    /// The reference's getSessionLimits answer, with only the limits the server enforces: the message limit (every
    /// message counts, telemetry ones too, so it bounds telemetry messages as well); a gateway gets its own limit as
    /// <c>gatewayRateLimits</c>. Data points are not limited, so none is advertised.
    /// </summary>
    private string SessionLimitsJson(bool gateway)
    {
        var sb = new StringBuilder(128);
        sb.Append("{\"maxPayloadSize\":").Append(options.MaxPayloadSize.ToString(CultureInfo.InvariantCulture))
          .Append(",\"maxInflightMessages\":").Append(options.MaxInflightMessages.ToString(CultureInfo.InvariantCulture));
        AppendRateLimits(sb, "rateLimits", gateway ? string.Empty : options.DeviceRateLimits);
        if (gateway)
        {
            AppendRateLimits(sb, "gatewayRateLimits", options.GatewayRateLimits);
        }

        return sb.Append('}').ToString();
    }

    private static void AppendRateLimits(StringBuilder sb, string name, string limits)
    {
        sb.Append(",\"").Append(name).Append("\":{");
        if (!string.IsNullOrEmpty(limits))
        {
            sb.Append("\"messages\":").Append(JsonString(limits)).Append(",\"telemetryMessages\":").Append(JsonString(limits));
        }

        sb.Append('}');
    }

    /// <summary>
    /// Records a claim request as server attributes: <c>claimingAllowed</c>=true and <c>claimingData</c>
    /// = {"secretKey":..,"expirationTime":ms} (the reference's names). An empty body claims without a secret for the
    /// default duration. The fields are read as the reference reads them: <c>secretKey</c> any JSON scalar as its
    /// text; <c>durationMs</c> a number or a numeric string (null, absent or not above 0: the default). Anything
    /// else is a bad payload.
    /// </summary>
    public ValueTask<UplinkResult> ClaimAsync(Device device, ReadOnlySequence<byte> json)
    {
        if (json.Length > options.MaxPayloadSize)
        {
            return new(new UplinkResult(UplinkStatus.TooLarge, $"payload exceeds {options.MaxPayloadSize} bytes"));
        }
        var secretKey = string.Empty;
        var durationMs = options.DefaultClaimDurationMs;
        if (!json.IsEmpty)
        {
            try
            {
                var reader = new Utf8JsonReader(json);
                using var doc = JsonDocument.ParseValue(ref reader);
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                {
                    return new(new UplinkResult(UplinkStatus.BadPayload, "claim body must be a JSON object"));
                }
                if (doc.RootElement.TryGetProperty("secretKey", out var s))
                {
                    secretKey = s.ValueKind switch
                    {
                        JsonValueKind.String => s.GetString()!,
                        JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => s.GetRawText(),
                        _ => string.Empty,
                    };
                }
                if (doc.RootElement.TryGetProperty("durationMs", out var d) && d.ValueKind != JsonValueKind.Null)
                {
                    if (!JavaNumbers.TryReadLong(d, out var ms))
                    {
                        return new(new UplinkResult(UplinkStatus.BadPayload, $"'durationMs' must be a number of milliseconds, not {d.GetRawText()}"));
                    }
                    if (ms > 0)
                    {
                        durationMs = ms;
                    }
                }
            }
            catch (JsonException e)
            {
                return new(new UplinkResult(UplinkStatus.BadPayload, e.Message));
            }
        }
        var claimData = "{\"secretKey\":" + JsonString(secretKey) + ",\"expirationTime\":" +
            (Now + durationMs).ToString(CultureInfo.InvariantCulture) + "}";
        KvEntry[] entries = [new KvEntry(keys.Intern("claimingAllowed"), true), new KvEntry(keys.Intern("claimingData"), claimData, isJson: true)];
        return Await(attributes.SaveAsync(device.Id, AttributeScope.Server, entries), attributes: true);
    }

    public ValueTask<FirmwareChunkResult> GetFirmwareChunkAsync(Device device, string? title, string? version, int chunkSize, int chunkIndex)
    {
        // The device's assigned package only; a title and version that name another are refused, as the reference
        // answers them ("Wrong title or version!", 400).
        var current = registry.GetDevice(device.Id);
        var package = current?.FirmwareId is { } id ? registry.GetOtaPackage(id) : null;
        if (package is null)
        {
            return new(new FirmwareChunkResult(new UplinkResult(UplinkStatus.NotFound, "no firmware assigned"), ReadOnlyMemory<byte>.Empty));
        }
        if ((title is not null && title != package.Title) || (version is not null && version != package.Version))
        {
            return new(new FirmwareChunkResult(new UplinkResult(UplinkStatus.BadPayload, "Wrong title or version!"), ReadOnlyMemory<byte>.Empty));
        }
        if (chunkSize <= 0 || chunkIndex < 0)
        {
            return new(new FirmwareChunkResult(new UplinkResult(UplinkStatus.BadPayload, "chunk size and index must be positive"), ReadOnlyMemory<byte>.Empty));
        }
        return new(new FirmwareChunkResult(UplinkResult.Success, registry.ReadOtaChunk(package.Id, chunkSize, chunkIndex)));
    }

    public async ValueTask<Device> GetOrCreateGatewayChildAsync(Device gateway, string name, string? type)
    {
        for (var attempt = 0; attempt < 3; attempt++)
        {
            if (registry.FindDeviceByName(gateway.TenantId, name) is { } existing)
            {
                return existing;
            }
            var info = "{\"gateway\":false,\"lastConnectedGateway\":\"" + gateway.Id.ToString() + "\"}";
            var created = await registry.CreateDeviceAsync(gateway.TenantId, name, type, label: null, additionalInfoJson: info,
                customerId: gateway.CustomerId);
            if (created.IsOk)
            {
                return created.Value!;
            }
            if (created.Status != RegistryStatus.Conflict)
            {
                throw new InvalidOperationException($"cannot create gateway child '{name}': {created.Error}");
            }
        }
        return registry.FindDeviceByName(gateway.TenantId, name)
            ?? throw new InvalidOperationException($"cannot create gateway child '{name}'");
    }
}
