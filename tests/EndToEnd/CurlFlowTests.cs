using System.Diagnostics;

namespace Perf.EndToEnd;

/// <summary>
/// The shape of the reference's Python snippet, as a plain-HTTP script: log in, create a device, read its
/// token, post telemetry through the device API, read it back. curl only, no SDK.
/// </summary>
[Collection(HostCollection.Name)]
public sealed class CurlFlowTests(HostFixture fixture)
{
    private const string Script = """
        set -eu
        H="http://127.0.0.1:$PORT"
        JWT=$(curl -sf -X POST "$H/api/auth/login" -H 'Content-Type: application/json' \
          -d '{"username":"tenant@example.com","password":"tenant"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
        DEVICE=$(curl -sf -X POST "$H/api/device" -H "X-Authorization: Bearer $JWT" -H 'Content-Type: application/json' \
          -d "{\"name\":\"$NAME\",\"type\":\"thermostat\"}" | sed -E 's/^\{"id":\{"entityType":"DEVICE","id":"([^"]+)".*/\1/')
        TOKEN=$(curl -sf "$H/api/device/$DEVICE/credentials" -H "X-Authorization: Bearer $JWT" \
          | sed -E 's/.*"credentialsId":"([^"]+)".*/\1/')
        curl -sf -X POST "$H/api/v1/$TOKEN/telemetry" -H 'Content-Type: application/json' -d '{"temperature":21.5}'
        curl -sf "$H/api/plugins/telemetry/DEVICE/$DEVICE/values/timeseries?keys=temperature" -H "X-Authorization: Bearer $JWT"
        """;

    [Fact]
    public async Task CurlScript_LogsIn_CreatesADevice_ReadsItsToken_AndReadsBackDeviceTelemetry()
    {
        var info = new ProcessStartInfo("bash", ["-c", Script])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment["PORT"] = fixture.Endpoints.Http!.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        info.Environment["NAME"] = "curl-" + Guid.NewGuid().ToString("N")[..8];
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(cts.Token);
        Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {await stdout} {await stderr}");
        Assert.Matches("""^\{"temperature":\[\{"ts":\d+,"value":"21.5"\}\]\}$""", (await stdout).Trim());
    }
}
