using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Perf.EndToEnd;

/// <summary>
/// Every endpoint of the running host, by caller: anonymous, a device access token used as a bearer,
/// the system administrator, the owning tenant's administrator, another tenant's administrator, a customer
/// user whose customer has the device and one whose customer has not. 401 without a valid JWT, 403 for a
/// role the endpoint does not take, 404 for an entity the caller may not see (Access.cs: never 403, so ids
/// of others do not leak), "ok" (anything else below 500) when allowed. An endpoint the matrix does not
/// list fails the test: a new endpoint must be added here with its expected answers.
/// </summary>
[Collection(HostCollection.Name)]
public sealed class AuthorizationMatrixTests(HostFixture fixture)
{
    private const int Ok = 0;
    private const int Bad = 400;
    private const int Unauthorized = 401;
    private const int Forbidden = 403;
    private const int NotFound = 404;

    private enum Kind
    {
        Secured,    // /api behind JwtAuthFilter
        Public,     // no credentials needed (health, metrics, OpenAPI, login)
        DeviceApi,  // /api/v1/{token}: the device access token in the path
        WebSocket,  // authenticated inside the socket or by ?token= (WebSocketAuth_* below)
        Grpc,       // edge door: routing key and secret (EdgeTests.Connect_WithBadCredentials_*)
    }

    /// <summary>Expected answers for [sysadmin, owner, other tenant's admin, customer with the device, customer without].</summary>
    private sealed record Row(string Method, string Pattern, Kind Kind, Func<World, Task<string>>? Path, Func<World, HttpContent?>? Body, int[] Expect);

    private static Row S(string method, string pattern, Func<World, string> path, int[] expect, Func<World, object>? body = null) =>
        new(method, pattern, Kind.Secured, w => Task.FromResult(path(w)), body is null ? null : w => JsonContent.Create(body(w)), expect);

    private static Row SFresh(string method, string pattern, Func<World, Task<string>> path, int[] expect) =>
        new(method, pattern, Kind.Secured, path, null, expect);

    private static Row Other(string method, string pattern, Kind kind, Func<World, string>? path = null, Func<World, object>? body = null) =>
        new(method, pattern, kind, path is null ? null : w => Task.FromResult(path(w)), body is null ? null : w => JsonContent.Create(body(w)), []);

    // Shorthands for the common rows.
    private static readonly int[] SysOnly = [Ok, Forbidden, Forbidden, Forbidden, Forbidden];
    private static readonly int[] TenantAdminCreate = [Forbidden, Ok, Ok, Forbidden, Forbidden];     // acts on the caller's own tenant
    private static readonly int[] TenantAdminEntity = [Forbidden, Ok, NotFound, Forbidden, Forbidden];
    private static readonly int[] DeviceRead = [NotFound, Ok, NotFound, Ok, NotFound];               // any signed-in user, by visibility
    private static readonly int[] DeviceWrite = [Forbidden, Ok, NotFound, Ok, NotFound];             // tenant admin or customer user, by visibility
    private static readonly int[] AnyUser = [Ok, Ok, Ok, Ok, Ok];

    private const string Telemetry = "/api/plugins/telemetry/{entityType}/{entityId:guid}";
    private const string ScopeRegex = "{scope:regex(^(SERVER_SCOPE|SHARED_SCOPE|CLIENT_SCOPE)$)}";

    private static readonly Row[] Matrix =
    [
        // ---- auth
        Other("POST", "/api/auth/login", Kind.Public, _ => "/api/auth/login", _ => new { username = "tenant@example.com", password = "tenant" }),
        Other("POST", "/api/auth/token", Kind.Public, _ => "/api/auth/token", w => new { refreshToken = w.OwnerRefresh }),
        Other("POST", "/api/noauth/activate", Kind.Public, _ => "/api/noauth/activate", _ => new { activateToken = "no-such-token", password = "pw-123456" }),
        S("GET", "/api/auth/user", _ => "/api/auth/user", AnyUser),
        // A wrong current password is 400 for everyone, and changes nothing.
        S("POST", "/api/auth/changePassword", _ => "/api/auth/changePassword", AnyUser, _ => new { currentPassword = "not-it", newPassword = "whatever-123" }),

        // ---- tenants, customers, users
        S("POST", "/api/tenant", _ => "/api/tenant", SysOnly, _ => new { title = "matrix-" + Guid.NewGuid().ToString("N")[..6] }),
        S("GET", "/api/tenant/{id:guid}", w => $"/api/tenant/{w.TenantA}", SysOnly),
        S("GET", "/api/tenants", _ => "/api/tenants", SysOnly),
        SFresh("DELETE", "/api/tenant/{id:guid}", async w => $"/api/tenant/{await w.NewTenantAsync()}", SysOnly),
        S("GET", "/api/tenant/{tenantId:guid}/users", w => $"/api/tenant/{w.TenantA}/users", SysOnly),
        S("GET", "/api/users", _ => "/api/users", TenantAdminCreate),
        S("POST", "/api/customer", _ => "/api/customer", TenantAdminCreate, _ => new { title = "matrix-" + Guid.NewGuid().ToString("N")[..6] }),
        S("GET", "/api/customer/{id:guid}", w => $"/api/customer/{w.C1}", [Forbidden, Ok, NotFound, Ok, NotFound]),
        S("GET", "/api/customers", _ => "/api/customers", TenantAdminCreate),
        SFresh("DELETE", "/api/customer/{id:guid}", async w => $"/api/customer/{await w.NewCustomerAsync()}", TenantAdminEntity),
        S("GET", "/api/customer/{customerId:guid}/users", w => $"/api/customer/{w.C1}/users", TenantAdminEntity),
        // A customer user of tenant A: the system administrator only sees tenant administrators.
        SFresh("DELETE", "/api/user/{id:guid}", async w => $"/api/user/{await w.NewCustomerUserAsync()}", [NotFound, Ok, NotFound, Forbidden, Forbidden]),
        S("GET", "/api/user/{id:guid}", w => $"/api/user/{w.CustAUser}", [NotFound, Ok, NotFound, Ok, NotFound]),
        // The user has a password: 400 "already activated" for the owner, who may see him.
        S("GET", "/api/user/{id:guid}/activationLink", w => $"/api/user/{w.CustAUser}/activationLink", [NotFound, Bad, NotFound, Forbidden, Forbidden]),
        // Another tenant's admin naming tenant A's customer is told the customer is not one of his (400).
        S("POST", "/api/user", _ => "/api/user", [Forbidden, Ok, Bad, Forbidden, Forbidden], w => new
        {
            email = $"matrix-{Guid.NewGuid():N}@example.com", authority = "CUSTOMER_USER", customerId = new { entityType = "CUSTOMER", id = w.C1 }, password = "x",
        }),

        // ---- devices
        // An update of D1 (same name): another tenant's admin cannot update a device of tenant A.
        S("POST", "/api/device", _ => "/api/device", [Forbidden, Ok, NotFound, Forbidden, Forbidden], w => new { id = new { entityType = "DEVICE", id = w.D1 }, name = w.D1Name, type = "default" }),
        S("GET", "/api/device/{id:guid}", w => $"/api/device/{w.D1}", DeviceRead),
        SFresh("DELETE", "/api/device/{id:guid}", async w => $"/api/device/{await w.NewDeviceAsync()}", TenantAdminEntity),
        S("GET", "/api/tenant/devices", _ => "/api/tenant/devices?pageSize=5&page=0", TenantAdminCreate),
        S("GET", "/api/customer/{customerId:guid}/devices", w => $"/api/customer/{w.C1}/devices?pageSize=5&page=0", [Forbidden, Ok, NotFound, Ok, NotFound]),
        S("GET", "/api/device/{id:guid}/credentials", w => $"/api/device/{w.D1}/credentials", DeviceRead),
        S("GET", "/api/device/info/{id:guid}", w => $"/api/device/info/{w.D1}", DeviceRead),
        S("GET", "/api/devices", w => $"/api/devices?deviceIds={w.D1}", [Forbidden, Ok, Ok, Ok, Ok]), // lists only what the caller sees
        S("GET", "/api/device/types", _ => "/api/device/types", [Forbidden, Ok, Ok, Ok, Ok]),
        S("GET", "/api/tenant/deviceInfos", _ => "/api/tenant/deviceInfos?pageSize=5&page=0", TenantAdminCreate),
        S("GET", "/api/customer/{customerId:guid}/deviceInfos", w => $"/api/customer/{w.C1}/deviceInfos?pageSize=5&page=0", [Forbidden, Ok, NotFound, Ok, NotFound]),
        S("POST", "/api/device-with-credentials", _ => "/api/device-with-credentials", TenantAdminCreate, _ => new
        {
            device = new { name = "matrix-" + Guid.NewGuid().ToString("N")[..8] }, credentials = new { credentialsType = "ACCESS_TOKEN" },
        }),

        // ---- device profiles: each tenant's default
        S("GET", "/api/deviceProfileInfo/default", _ => "/api/deviceProfileInfo/default", [Forbidden, Ok, Ok, Ok, Ok]),
        S("GET", "/api/deviceProfileInfo/{id:guid}", w => $"/api/deviceProfileInfo/{Perf.Api.Rest.DeviceProfiles.DefaultId(Guid.Parse(w.TenantA))}", [Forbidden, Ok, NotFound, Ok, Ok]),
        S("GET", "/api/deviceProfileInfos", _ => "/api/deviceProfileInfos", [Forbidden, Ok, Ok, Ok, Ok]),
        S("GET", "/api/deviceProfile/{id:guid}", w => $"/api/deviceProfile/{Perf.Api.Rest.DeviceProfiles.DefaultId(Guid.Parse(w.TenantA))}", TenantAdminEntity),
        S("GET", "/api/deviceProfiles", _ => "/api/deviceProfiles", TenantAdminCreate),
        S("POST", "/api/device/credentials", _ => "/api/device/credentials", TenantAdminEntity, w => new
        {
            deviceId = new { entityType = "DEVICE", id = w.D1 }, credentialsType = "ACCESS_TOKEN", credentialsId = w.D1Token,
        }),
        S("POST", "/api/customer/{customerId:guid}/device/{deviceId:guid}", w => $"/api/customer/{w.C1}/device/{w.D1}", TenantAdminEntity),
        SFresh("DELETE", "/api/customer/device/{deviceId:guid}", async w => $"/api/customer/device/{await w.NewDeviceAsync()}", TenantAdminEntity),

        // ---- telemetry and attributes of D1
        S("POST", Telemetry + "/attributes/{scope}", w => $"/api/plugins/telemetry/DEVICE/{w.D1}/attributes/SERVER_SCOPE", DeviceWrite, _ => new { matrix = 1 }),
        S("POST", Telemetry + "/" + ScopeRegex, w => $"/api/plugins/telemetry/DEVICE/{w.D1}/SHARED_SCOPE", DeviceWrite, _ => new { matrix = 1 }),
        S("DELETE", Telemetry + "/" + ScopeRegex, w => $"/api/plugins/telemetry/DEVICE/{w.D1}/SERVER_SCOPE?keys=none", DeviceWrite),
        S("POST", "/api/plugins/telemetry/{deviceId:guid}/" + ScopeRegex, w => $"/api/plugins/telemetry/{w.D1}/SHARED_SCOPE", DeviceWrite, _ => new { matrix = 1 }),
        S("DELETE", "/api/plugins/telemetry/{deviceId:guid}/" + ScopeRegex, w => $"/api/plugins/telemetry/{w.D1}/SERVER_SCOPE?keys=none", DeviceWrite),
        S("GET", Telemetry + "/values/attributes", w => $"/api/plugins/telemetry/DEVICE/{w.D1}/values/attributes", DeviceRead),
        S("GET", Telemetry + "/values/attributes/{scope}", w => $"/api/plugins/telemetry/DEVICE/{w.D1}/values/attributes/SHARED_SCOPE", DeviceRead),
        S("GET", Telemetry + "/keys/attributes", w => $"/api/plugins/telemetry/DEVICE/{w.D1}/keys/attributes", DeviceRead),
        S("GET", Telemetry + "/keys/attributes/{scope}", w => $"/api/plugins/telemetry/DEVICE/{w.D1}/keys/attributes/SHARED_SCOPE", DeviceRead),
        S("GET", Telemetry + "/keys/timeseries", w => $"/api/plugins/telemetry/DEVICE/{w.D1}/keys/timeseries", DeviceRead),
        S("GET", Telemetry + "/values/timeseries", w => $"/api/plugins/telemetry/DEVICE/{w.D1}/values/timeseries?keys=t", DeviceRead),
        S("POST", Telemetry + "/timeseries/{scope}", w => $"/api/plugins/telemetry/DEVICE/{w.D1}/timeseries/ANY", DeviceWrite, _ => new { t = 1 }),
        S("POST", Telemetry + "/timeseries/{scope}/{ttl}", w => $"/api/plugins/telemetry/DEVICE/{w.D1}/timeseries/ANY/60", DeviceWrite, _ => new { t = 1 }),
        S("DELETE", Telemetry + "/timeseries/delete", w => $"/api/plugins/telemetry/DEVICE/{w.D1}/timeseries/delete?keys=none", DeviceWrite),

        // ---- RPC to D1 (offline: answered without waiting)
        // No params: 400 at once after the access check (a valid call to the offline device would wait out the 5 s minimum).
        S("POST", "/api/plugins/rpc/{callType}/{deviceId:guid}", w => $"/api/plugins/rpc/oneway/{w.D1}", DeviceWrite, _ => new { method = "m" }),
        S("POST", "/api/rpc/{callType}/{deviceId:guid}", w => $"/api/rpc/oneway/{w.D1}", DeviceWrite, _ => new { method = "m" }),
        S("GET", "/api/rpc/persistent/{rpcId:guid}", w => $"/api/rpc/persistent/{w.R1}", DeviceWrite),
        SFresh("DELETE", "/api/rpc/persistent/{rpcId:guid}", async w => $"/api/rpc/persistent/{await w.NewPersistentRpcAsync()}", TenantAdminEntity),
        S("GET", "/api/rpc/persistent/device/{deviceId:guid}", w => $"/api/rpc/persistent/device/{w.D1}?pageSize=5&page=0", DeviceWrite),

        // ---- OTA: customer users read infos of their tenant's packages; the package and its bytes are the admin's
        S("POST", "/api/otaPackage", _ => "/api/otaPackage", TenantAdminCreate, _ => new { title = "matrix", version = Guid.NewGuid().ToString("N")[..8], type = "FIRMWARE" }),
        new("POST", "/api/otaPackage/{id:guid}", Kind.Secured, async w => $"/api/otaPackage/{await w.NewOtaDraftAsync()}", _ => new ByteArrayContent([1, 2, 3]) { Headers = { ContentType = new MediaTypeHeaderValue("application/octet-stream") } }, TenantAdminEntity),
        S("GET", "/api/otaPackage/{id:guid}", w => $"/api/otaPackage/{w.O1}", TenantAdminEntity),
        S("GET", "/api/otaPackage/info/{id:guid}", w => $"/api/otaPackage/info/{w.O1}", [Forbidden, Ok, NotFound, Ok, Ok]),
        S("GET", "/api/otaPackages", _ => "/api/otaPackages?pageSize=5&page=0", [Forbidden, Ok, Ok, Ok, Ok]),
        S("GET", "/api/otaPackage/{id:guid}/download", w => $"/api/otaPackage/{w.O1}/download", TenantAdminEntity),
        S("POST", "/api/device/{deviceId:guid}/firmware/{otaId:guid}", w => $"/api/device/{w.D1}/firmware/{w.O1}", TenantAdminEntity),
        S("DELETE", "/api/device/{deviceId:guid}/firmware", w => $"/api/device/{w.D1}/firmware", TenantAdminEntity),

        // ---- integrations and converters (tenant administrators only)
        S("POST", "/api/converter", _ => "/api/converter", TenantAdminCreate, _ => new { name = "matrix-" + Guid.NewGuid().ToString("N")[..6], type = "UPLINK", configuration = new { scriptLang = "JS", decoder = "return {};" } }),
        S("GET", "/api/converter/{id:guid}", w => $"/api/converter/{w.Cv1}", TenantAdminEntity),
        S("GET", "/api/converters", _ => "/api/converters?pageSize=5&page=0", TenantAdminCreate),
        SFresh("DELETE", "/api/converter/{id:guid}", async w => $"/api/converter/{await w.NewConverterAsync()}", TenantAdminEntity),
        S("GET", "/api/converter/{id:guid}/events", w => $"/api/converter/{w.Cv1}/events?pageSize=5&page=0", TenantAdminEntity),
        S("POST", "/api/converter/testUpLink", _ => "/api/converter/testUpLink", TenantAdminCreate, _ => new { metadata = new { }, payload = "", decoder = "return {};" }),
        // Another tenant's admin naming tenant A's converter: not found among his (400 or 404, never created).
        S("POST", "/api/integration", _ => "/api/integration", [Forbidden, Ok, Bad, Forbidden, Forbidden], w => IntegrationBody(w.Cv1)),
        S("GET", "/api/integration/{id:guid}", w => $"/api/integration/{w.I1}", TenantAdminEntity),
        S("GET", "/api/integrations", _ => "/api/integrations?pageSize=5&page=0", TenantAdminCreate),
        SFresh("DELETE", "/api/integration/{id:guid}", async w => $"/api/integration/{await w.NewIntegrationAsync()}", TenantAdminEntity),
        S("POST", "/api/integration/{id:guid}/enable", w => $"/api/integration/{w.I1}/enable", TenantAdminEntity),
        S("POST", "/api/integration/{id:guid}/disable", w => $"/api/integration/{w.I1}/disable", TenantAdminEntity),
        // The default integration belongs to the first tenant (the owner's).
        S("GET", "/api/integration/default/events", _ => "/api/integration/default/events?pageSize=5&page=0", TenantAdminEntity),
        S("GET", "/api/integration/{id:guid}/events", w => $"/api/integration/{w.I1}/events?pageSize=5&page=0", TenantAdminEntity),
        S("GET", "/api/events/{entityType}/{id:guid}/{eventType?}", w => $"/api/events/INTEGRATION/{w.I1}/DEBUG_INTEGRATION?pageSize=5", TenantAdminEntity),

        // ---- edges (the edge body carries its secret: tenant administrators only)
        S("POST", "/api/edge", _ => "/api/edge", TenantAdminCreate, _ => new { name = "matrix-" + Guid.NewGuid().ToString("N")[..6], type = "default" }),
        S("GET", "/api/edge/{id:guid}", w => $"/api/edge/{w.E1}", TenantAdminEntity),
        S("GET", "/api/tenant/edges", _ => "/api/tenant/edges?pageSize=5&page=0", TenantAdminCreate),
        SFresh("DELETE", "/api/edge/{id:guid}", async w => $"/api/edge/{await w.NewEdgeAsync()}", TenantAdminEntity),
        S("POST", "/api/edge/{edgeId:guid}/device/{deviceId:guid}", w => $"/api/edge/{w.E1}/device/{w.D1}", TenantAdminEntity),
        S("DELETE", "/api/edge/{edgeId:guid}/device/{deviceId:guid}", w => $"/api/edge/{w.E1}/device/{w.D1}", TenantAdminEntity),
        S("GET", "/api/edge/{edgeId:guid}/devices", w => $"/api/edge/{w.E1}/devices?pageSize=5&page=0", TenantAdminEntity),
        S("POST", "/api/edge/sync/{edgeId:guid}", w => $"/api/edge/sync/{w.E1}", TenantAdminEntity),
        S("GET", "/api/tenant/edgeInfos", _ => "/api/tenant/edgeInfos?pageSize=5&page=0", TenantAdminCreate),
        S("GET", "/api/edge/info/{id:guid}", w => $"/api/edge/info/{w.E1}", TenantAdminEntity),
        S("GET", "/api/edges/enabled", _ => "/api/edges/enabled", AnyUser),
        S("GET", "/api/edge/types", _ => "/api/edge/types", TenantAdminCreate),
        S("GET", "/api/edges", w => $"/api/edges?edgeIds={w.E1}", TenantAdminCreate), // lists only what the caller sees
        // Assigned by the owner, then unassigned (which needs an assigned edge).
        S("POST", "/api/customer/{customerId:guid}/edge/{edgeId:guid}", w => $"/api/customer/{w.C1}/edge/{w.E1}", TenantAdminEntity),
        S("GET", "/api/customer/{customerId:guid}/edges", w => $"/api/customer/{w.C1}/edges?pageSize=5&page=0", TenantAdminEntity),
        S("DELETE", "/api/customer/edge/{edgeId:guid}", w => $"/api/customer/edge/{w.E1}", TenantAdminEntity),

        // ---- public
        Other("GET", "/health", Kind.Public, _ => "/health"),
        Other("GET", "/ready", Kind.Public, _ => "/ready"),
        Other("GET", "/health/runtime", Kind.Public, _ => "/health/runtime"),
        Other("ANY", "/metrics", Kind.Public, _ => "/metrics"),
        Other("GET", "/openapi/{documentName}.json", Kind.Public, _ => "/openapi/v1.json"),
        Other("GET", "/swagger", Kind.Public, _ => "/swagger"),

        // ---- device API: the access token in the path is the credential
        Other("POST", "/api/v1/{token}/telemetry", Kind.DeviceApi, _ => "telemetry", _ => new { t = 1 }),
        Other("POST", "/api/v1/{token}/attributes", Kind.DeviceApi, _ => "attributes", _ => new { a = 1 }),
        Other("POST", "/api/v1/{token}/claim", Kind.DeviceApi, _ => "claim", _ => new { secretKey = "k", durationMs = 1000 }),
        Other("POST", "/api/v1/{token}/rpc/{id:int}", Kind.DeviceApi, _ => "rpc/424242", _ => new { result = "ok" }),
        Other("POST", "/api/v1/{token}/rpc", Kind.DeviceApi, _ => "rpc", _ => new { method = "getTime", @params = new { } }),
        Other("GET", "/api/v1/{token}/attributes", Kind.DeviceApi, _ => "attributes?clientKeys=a"),
        Other("GET", "/api/v1/{token}/attributes/updates", Kind.DeviceApi, _ => "attributes/updates?timeout=100"),
        Other("GET", "/api/v1/{token}/rpc", Kind.DeviceApi, _ => "rpc?timeout=100"),
        Other("GET", "/api/v1/{token}/firmware", Kind.DeviceApi, _ => "firmware?title=matrix&version=none"),

        Other("ANY", "/api/ws", Kind.WebSocket),
        Other("ANY", "/api/ws/plugins/telemetry", Kind.WebSocket),
        Other("POST", "/edge.EdgeRpcService/handleMsgs", Kind.Grpc),
        Other("ANY", "edge.EdgeRpcService/{unimplementedMethod:grpcunimplemented}", Kind.Grpc),
        Other("ANY", "{unimplementedService}/{unimplementedMethod:grpcunimplemented}", Kind.Grpc),

        // Last: a logout ends the session of the token that calls it, and the callers' tokens are the world's.
        S("POST", "/api/auth/logout", _ => "/api/auth/logout", AnyUser),
    ];

    [Fact]
    public void Matrix_CoversEveryEndpointOfTheRunningHost_AndNothingElse()
    {
        var endpoints = fixture.Host.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .SelectMany(e => (e.Metadata.GetMetadata<HttpMethodMetadata>()?.HttpMethods ?? ["ANY"]).Select(m => $"{m} {e.RoutePattern.RawText}"))
            .ToHashSet();
        var listed = Matrix.Select(r => $"{r.Method} {r.Pattern}").ToList();
        Assert.Equal(listed.Count, listed.Distinct().Count());
        var missing = endpoints.Except(listed).Order().ToList();
        var stale = listed.Except(endpoints).Order().ToList();
        Assert.True(missing.Count == 0, "endpoints without a row in AuthorizationMatrixTests.Matrix (add one):\n" + string.Join('\n', missing));
        Assert.True(stale.Count == 0, "rows for endpoints that do not exist:\n" + string.Join('\n', stale));
    }

    [Fact]
    public async Task EveryEndpoint_AnswersEachCallerAsTheMatrixSays()
    {
        var world = await World.CreateAsync(fixture);
        using var http = fixture.CreateHttpClient();
        var failures = new List<string>();
        foreach (var row in Matrix)
        {
            switch (row.Kind)
            {
                case Kind.Secured:
                {
                    var path = await row.Path!(world);
                    // Owner last: deleting endpoints act on a target made for the row.
                    var callers = new (string Name, string? Jwt, int Expect)[]
                    {
                        ("anonymous", null, Unauthorized),
                        ("device token as bearer", world.D1Token, Unauthorized),
                        ("forged JWT", world.ForgedJwt, Unauthorized),
                        ("other tenant admin", world.Other, row.Expect[2]),
                        ("customer without the device", world.CustN, row.Expect[4]),
                        ("customer with the device", world.CustA, row.Expect[3]),
                        ("sysadmin", world.Sys, row.Expect[0]),
                        ("owner", world.Owner, row.Expect[1]),
                    };
                    foreach (var (name, jwt, expect) in callers)
                    {
                        var (status, body) = await SendAsync(http, row.Method, path, jwt, row.Body?.Invoke(world));
                        Check(failures, row, name, path, expect, status, body);
                    }

                    break;
                }

                case Kind.Public:
                {
                    var path = await row.Path!(world);
                    var (status, body) = await SendAsync(http, row.Method == "ANY" ? "GET" : row.Method, path, null, row.Body?.Invoke(world));
                    Check(failures, row, "anonymous", path, Ok, status, body);
                    break;
                }

                case Kind.DeviceApi:
                {
                    var suffix = await row.Path!(world);
                    var (bad, badBody) = await SendAsync(http, row.Method, $"/api/v1/NoSuchToken{Guid.NewGuid():N}/{suffix}", null, row.Body?.Invoke(world));
                    Check(failures, row, "unknown device token", suffix, Unauthorized, bad, badBody);
                    // A JWT is no device credential either.
                    var (jwtAsToken, jwtBody) = await SendAsync(http, row.Method, $"/api/v1/{world.Owner}/{suffix}", null, row.Body?.Invoke(world));
                    Check(failures, row, "JWT as device token", suffix, Unauthorized, jwtAsToken, jwtBody);
                    var (good, goodBody) = await SendAsync(http, row.Method, $"/api/v1/{world.D2Token}/{suffix}", null, row.Body?.Invoke(world));
                    if (good is Unauthorized or Forbidden or >= 500)
                    {
                        failures.Add($"{row.Method} {row.Pattern} as the device: expected not 401/403/5xx, got {good} {goodBody}");
                    }

                    break;
                }
            }
        }

        Assert.True(failures.Count == 0, $"{failures.Count} answers differ from the matrix:\n" + string.Join('\n', failures));
    }

    private static void Check(List<string> failures, Row row, string caller, string path, int expect, int status, string body)
    {
        var matches = expect == Ok ? status is not (Unauthorized or Forbidden or NotFound) and < 500 : status == expect;
        if (!matches)
        {
            failures.Add($"{row.Method} {row.Pattern} as {caller} ({path}): expected {(expect == Ok ? "ok" : expect)}, got {status} {Truncate(body)}");
            return;
        }

        // Refusals answer the reference's error body: {"status","message","errorCode",...}.
        if (status is Unauthorized or Forbidden or NotFound && row.Kind == Kind.Secured)
        {
            var json = JsonNode.Parse(body) as JsonObject;
            var code = status switch { Unauthorized => 10, Forbidden => 20, _ => 32 };
            if (json?["status"]?.GetValue<int>() != status || json["errorCode"]?.GetValue<int>() != code || json["message"] is null)
            {
                failures.Add($"{row.Method} {row.Pattern} as {caller}: {status} without the error body (errorCode {code}): {Truncate(body)}");
            }
        }
    }

    private static string Truncate(string text) => text.Length > 200 ? text[..200] + "..." : text;

    private static async Task<(int Status, string Body)> SendAsync(HttpClient http, string method, string path, string? jwt, HttpContent? content)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = content };
        if (jwt is not null)
        {
            request.Headers.TryAddWithoutValidation("X-Authorization", "Bearer " + jwt);
        }

        using var response = await http.SendAsync(request);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static object IntegrationBody(string converterId) => new
    {
        name = "matrix-" + Guid.NewGuid().ToString("N")[..6],
        type = "TCP",
        enabled = false,
        defaultConverterId = new { id = converterId },
        configuration = new
        {
            clientConfiguration = new
            {
                port = 0,
                handlerConfiguration = new { handlerType = "TEXT", maxFrameLength = 128, stripDelimiter = true, messageSeparator = "SYSTEM_LINE_SEPARATOR" },
            },
        },
    };

    /// <summary>Tenant A (the default tenant, so its admin owns the default integration) and tenant B, their users and entities.</summary>
    private sealed class World
    {
        private readonly HostFixture _fixture;
        private readonly Rest _owner;
        private readonly Rest _sys;

        private World(HostFixture fixture, Rest owner, Rest sys)
        {
            _fixture = fixture;
            _owner = owner;
            _sys = sys;
        }

        public string Owner => _owner.Token;
        public string OwnerRefresh => _owner.RefreshToken;
        public string Sys => _sys.Token;
        public string Other { get; private set; } = "";
        public string CustA { get; private set; } = "";
        public string CustN { get; private set; } = "";
        public string ForgedJwt { get; private set; } = "";
        public string TenantA { get; private set; } = "";
        public string C1 { get; private set; } = "";
        public string CustAUser { get; private set; } = "";
        public string D1 { get; private set; } = "";
        public string D1Name { get; private set; } = "";
        public string D1Token { get; private set; } = "";
        public string D2Token { get; private set; } = "";
        public string E1 { get; private set; } = "";
        public string O1 { get; private set; } = "";
        public string R1 { get; private set; } = "";
        public string Cv1 { get; private set; } = "";
        public string I1 { get; private set; } = "";

        public static async Task<World> CreateAsync(HostFixture fixture)
        {
            var w = new World(fixture, await Rest.LoginAsync(fixture), await Rest.LoginAsync(fixture, "sysadmin@example.com", "sysadmin"));
            var me = await w._owner.GetAsync("/api/auth/user");
            w.TenantA = me["tenantId"]!["id"]!.GetValue<string>();
            var tag = Guid.NewGuid().ToString("N")[..8];

            // Tenant B and its administrator.
            var tenantB = (await w._sys.PostAsync("/api/tenant", new { title = "matrix-b-" + tag }))["id"]!["id"]!.GetValue<string>();
            await w._sys.PostAsync("/api/user", new { email = $"admin-b-{tag}@example.com", authority = "TENANT_ADMIN", tenantId = new { id = tenantB }, password = "pw-b" });
            using (var other = await Rest.LoginAsync(fixture, $"admin-b-{tag}@example.com", "pw-b"))
            {
                w.Other = other.Token;
            }

            // Customers C1 (has D1) and C2 (has nothing), each with a user.
            w.C1 = (await w._owner.PostAsync("/api/customer", new { title = "matrix-c1-" + tag }))["id"]!["id"]!.GetValue<string>();
            var c2 = (await w._owner.PostAsync("/api/customer", new { title = "matrix-c2-" + tag }))["id"]!["id"]!.GetValue<string>();
            w.CustAUser = (await w._owner.PostAsync("/api/user", new { email = $"cu-a-{tag}@example.com", authority = "CUSTOMER_USER", customerId = new { id = w.C1 }, password = "pw-a" }))["id"]!["id"]!.GetValue<string>();
            await w._owner.PostAsync("/api/user", new { email = $"cu-n-{tag}@example.com", authority = "CUSTOMER_USER", customerId = new { id = c2 }, password = "pw-n" });
            using (var a = await Rest.LoginAsync(fixture, $"cu-a-{tag}@example.com", "pw-a"))
            using (var n = await Rest.LoginAsync(fixture, $"cu-n-{tag}@example.com", "pw-n"))
            {
                w.CustA = a.Token;
                w.CustN = n.Token;
            }

            w.D1Name = "matrix-d1-" + tag;
            (w.D1, w.D1Token) = await w._owner.CreateDeviceAsync(w.D1Name);
            await w._owner.PostAsync($"/api/customer/{w.C1}/device/{w.D1}", new { });
            (_, w.D2Token) = await w._owner.CreateDeviceAsync("matrix-d2-" + tag);

            // A JWT in our shape signed with another key.
            var parts = w.Owner.Split('.');
            ForgeWith(parts, out var forged);
            w.ForgedJwt = forged;

            w.E1 = await w.NewEdgeAsync();
            w.O1 = await w.NewOtaDraftAsync();
            using (var upload = await w._owner.Http.PostAsync($"/api/otaPackage/{w.O1}", new ByteArrayContent([1, 2, 3]) { Headers = { ContentType = new MediaTypeHeaderValue("application/octet-stream") } }))
            {
                Assert.True(upload.IsSuccessStatusCode, await upload.Content.ReadAsStringAsync());
            }

            w.R1 = await w.NewPersistentRpcAsync();
            w.Cv1 = await w.NewConverterAsync();
            w.I1 = await w.NewIntegrationAsync();
            return w;
        }

        private static void ForgeWith(string[] parts, out string forged)
        {
            var input = parts[0] + "." + parts[1];
            var signature = System.Security.Cryptography.HMACSHA512.HashData(System.Security.Cryptography.RandomNumberGenerator.GetBytes(64), Encoding.ASCII.GetBytes(input));
            forged = input + "." + System.Buffers.Text.Base64Url.EncodeToString(signature);
        }

        public async Task<string> NewTenantAsync() =>
            (await _sys.PostAsync("/api/tenant", new { title = "matrix-doomed-" + Guid.NewGuid().ToString("N")[..6] }))["id"]!["id"]!.GetValue<string>();

        public async Task<string> NewCustomerAsync() =>
            (await _owner.PostAsync("/api/customer", new { title = "matrix-doomed-" + Guid.NewGuid().ToString("N")[..6] }))["id"]!["id"]!.GetValue<string>();

        public async Task<string> NewCustomerUserAsync() =>
            (await _owner.PostAsync("/api/user", new { email = $"doomed-{Guid.NewGuid():N}@example.com", authority = "CUSTOMER_USER", customerId = new { id = C1 }, password = "x" }))["id"]!["id"]!.GetValue<string>();

        /// <summary>A device of tenant A assigned to C1.</summary>
        public async Task<string> NewDeviceAsync()
        {
            var (id, _) = await _owner.CreateDeviceAsync("matrix-doomed-" + Guid.NewGuid().ToString("N")[..8]);
            await _owner.PostAsync($"/api/customer/{C1}/device/{id}", new { });
            return id;
        }

        public async Task<string> NewEdgeAsync() =>
            (await _owner.PostAsync("/api/edge", new { name = "matrix-edge-" + Guid.NewGuid().ToString("N")[..8], type = "default" }))["id"]!["id"]!.GetValue<string>();

        public async Task<string> NewOtaDraftAsync() =>
            (await _owner.PostAsync("/api/otaPackage", new { title = "matrix", version = Guid.NewGuid().ToString("N")[..8], type = "FIRMWARE" }))["id"]!["id"]!.GetValue<string>();

        public async Task<string> NewPersistentRpcAsync() =>
            (await _owner.PostAsync($"/api/rpc/twoway/{D1}", new { method = "matrix", @params = new { }, persistent = true, timeout = 60000 }))["rpcId"]!.GetValue<string>();

        public async Task<string> NewConverterAsync() =>
            (await _owner.PostAsync("/api/converter", new { name = "matrix-" + Guid.NewGuid().ToString("N")[..6], type = "UPLINK", configuration = new { scriptLang = "JS", decoder = "return {};" } }))["id"]!["id"]!.GetValue<string>();

        public async Task<string> NewIntegrationAsync() =>
            (await _owner.PostAsync("/api/integration", IntegrationBody(Cv1)))["id"]!["id"]!.GetValue<string>();
    }
}
