namespace Perf.Kestrel.Tcp.Tests;

/// <summary>The seed's scripts (001_55d7b12016bbd92e), verbatim: they must run unchanged.</summary>
internal static class SeedScripts
{
    public const string Decoder = """
        /** Decoder **/
        // decode payload to string
        var strArray = decodeToString(payload);
        var payloadArray = strArray.replaceAll("\"", "").replaceAll("\\n", "").split(',');
        var telemetryPayload = {};
        for (var i = 2; i < payloadArray.length; i = i + 2) {
        var telemetryKey = payloadArray[i];
        var telemetryValue = parseFloat(payloadArray[i + 1]);
        telemetryPayload[telemetryKey] = telemetryValue;
        }
        // Result object with device attributes/telemetry data
        var result = {
        deviceName: payloadArray[0],
        deviceType: payloadArray[1],
        telemetry: telemetryPayload,
        attributes: {}
        };
        /** Helper functions 'decodeToString' and 'decodeToJson' are already built-in **/
        return result;
        """;

    public const string Encoder = """
        /** Encoder **/
        var data = {};
        data.tempFreq = msg.temperatureUploadFrequency;
        data.humFreq = msg.humidityUploadFrequency;
        data.devSerialNumber = metadata['ss_serialNumber'];
        var result = {
        contentType: "JSON",
        data: JSON.stringify(msg),
        metadata: {
        topic: metadata['deviceType'] + '/' + metadata['deviceName'] + '/upload'
        }
        };
        return result;
        """;
}
