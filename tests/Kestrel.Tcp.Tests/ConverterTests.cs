using System.Buffers;
using System.Text;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Tcp.Tests;

public sealed class ConverterTests
{
    private const long Now = 1_700_000_000_000;
    private static readonly Dictionary<string, string> NoMetadata = [];

    private static IUplinkConverter Uplink(TcpConverterConfiguration configuration, Dictionary<string, string>? metadata = null) =>
        TcpIntegration.CreateUplinkConverter(configuration, metadata ?? NoMetadata, new KeyTable(), () => Now);

    private static UplinkBatch Convert(IUplinkConverter converter, string payload)
    {
        var batch = new UplinkBatch();
        Assert.True(converter.TryConvert(Encoding.UTF8.GetBytes(payload), batch, out var error), error);
        return batch;
    }

    [Fact]
    public void SeedDecoder_TurnsTheSeedsLinesIntoTemperatureAndHumidity()
    {
        var converter = Uplink(TcpConverterConfiguration.JsDecoder(SeedScripts.Decoder));

        var first = Convert(converter, "SN-002,default,temperature,25.7");
        Assert.Equal(1, first.Count);
        Assert.Equal("SN-002", first[0].DeviceName);
        Assert.Equal("default", first[0].DeviceType);
        Assert.Equal([new TsKvEntry(Now, new KvEntry("temperature", 25.7))], first[0].Telemetry);
        Assert.Empty(first[0].Attributes);

        var second = Convert(converter, "SN-002,default,humidity,69");
        Assert.Equal([new TsKvEntry(Now, new KvEntry("humidity", 69L))], second[0].Telemetry);
    }

    [Fact]
    public void SeedDecoder_RunsConcurrently_OnPooledEngines()
    {
        var converter = Uplink(TcpConverterConfiguration.JsDecoder(SeedScripts.Decoder));
        Parallel.For(0, 200, i =>
        {
            var batch = Convert(converter, $"dev-{i},t,k,{i}");
            Assert.Equal($"dev-{i}", batch[0].DeviceName);
            Assert.Equal((long)i, batch[0].Telemetry[0].Entry.LongValue);
        });
    }

    [Fact]
    public void JsDecoder_GetsPayloadBytesAndIntegrationMetadata_AndMayReturnAnArrayWithTimestamps()
    {
        const string decoder = """
            var data = decodeToJson(payload);
            return [
              { deviceName: data.id + '-' + metadata.site, deviceType: 'meter', telemetry: [{ ts: 1000, values: { v: data.v } }] },
              { deviceName: 'raw', deviceType: 'bytes', attributes: { first: payload[0], len: payload.length, hex: bytesToHex(payload.slice(0, 2)) } }
            ];
            """;
        var converter = Uplink(TcpConverterConfiguration.JsDecoder(decoder), new Dictionary<string, string> { ["site"] = "north" });
        var batch = Convert(converter, """{"id":"m1","v":true}""");
        Assert.Equal(2, batch.Count);
        Assert.Equal("m1-north", batch[0].DeviceName);
        Assert.Equal([new TsKvEntry(1000, new KvEntry("v", true))], batch[0].Telemetry);
        Assert.Equal([new KvEntry("first", (long)'{'), new KvEntry("len", 20L), new KvEntry("hex", "7b22")], batch[1].Attributes);
    }

    [Fact]
    public void DecodeToString_DecodesUtf8()
    {
        var converter = Uplink(TcpConverterConfiguration.JsDecoder("return { deviceName: decodeToString(payload), deviceType: 'x' };"));
        Assert.Equal("Gerät-ä", Convert(converter, "Gerät-ä")[0].DeviceName);
    }

    [Theory]
    [InlineData("throw new Error('boom');", "boom")]
    [InlineData("while (true) {}", "timed out")]
    [InlineData("function f(n) { return f(n + 1); } return f(0);", "recursion")]
    [InlineData("return { deviceType: 'x' };", "deviceName is empty")]
    [InlineData("return 42;", "object or an array")]
    public void JsDecoder_ReportsScriptFailuresAsErrors_NotExceptions(string decoder, string expected)
    {
        var configuration = TcpConverterConfiguration.JsDecoder(decoder);
        configuration.ScriptTimeoutMs = 200;
        configuration.ScriptMemoryLimitBytes = 4 * 1024 * 1024;
        var converter = Uplink(configuration);
        var batch = new UplinkBatch();
        Assert.False(converter.TryConvert("a"u8, batch, out var error));
        Assert.Contains(expected, error, StringComparison.OrdinalIgnoreCase);

        // The engine that failed goes back to the pool and still works; the time limit is per call.
        Thread.Sleep(250);
        Assert.False(converter.TryConvert("a"u8, batch, out var again));
        Assert.Contains(expected, again, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void JsDecoder_ReportsTheMemoryLimit()
    {
        var configuration = TcpConverterConfiguration.JsDecoder("var a = []; while (true) { a.push('xxxxxxxxxxxxxxxxxxxxxxxx' + a.length); }");
        configuration.ScriptTimeoutMs = 30_000;
        configuration.ScriptMemoryLimitBytes = 1024 * 1024;
        Assert.False(Uplink(configuration).TryConvert("a"u8, new UplinkBatch(), out var error));
        Assert.Contains("memory", error, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void JsDecoder_TimeLimitIsPerCall()
    {
        var configuration = TcpConverterConfiguration.JsDecoder("return { deviceName: 'a', deviceType: 'b' };");
        configuration.ScriptTimeoutMs = 500;
        var converter = Uplink(configuration);
        Convert(converter, "x");
        Thread.Sleep(700);
        Convert(converter, "x");
    }

    [Fact]
    public void JsDecoder_ThatDoesNotCompile_IsRejectedWhenTheConverterIsCreated() =>
        Assert.Throws<ArgumentException>(() => Uplink(TcpConverterConfiguration.JsDecoder("return {")));

    [Fact]
    public void TestDecoder_RunsTheSeedsDecoderAgainstASample()
    {
        var (ok, output) = TcpIntegration.TestDecoder(TcpConverterConfiguration.JsDecoder(SeedScripts.Decoder), "SN-002,default,temperature,25.7"u8);
        Assert.True(ok, output);
        Assert.Contains("temperature=25.7", output);
    }

    [Fact]
    public void CsvConverter_DecodesTheSeedsLines_LikeTheSeedsDecoder()
    {
        var converter = Uplink(TcpConverterConfiguration.CsvDefault());
        var batch = Convert(converter, "SN-002,default,temperature,25.7,humidity,69,ok,true,mode,\"eco\"\r");
        Assert.Equal("SN-002", batch[0].DeviceName);
        Assert.Equal("default", batch[0].DeviceType);
        Assert.Equal(
            [
                new TsKvEntry(Now, new KvEntry("temperature", 25.7)),
                new TsKvEntry(Now, new KvEntry("humidity", 69L)),
                new TsKvEntry(Now, new KvEntry("ok", true)),
                new TsKvEntry(Now, new KvEntry("mode", "eco")),
            ],
            batch[0].Telemetry);
    }

    [Fact]
    public void CsvConverter_UsesFixedKeysByPosition_AndADefaultType()
    {
        var configuration = TcpConverterConfiguration.CsvDefault();
        configuration.Csv = new TcpCsvConverterOptions { Separator = ';', DeviceTypeField = -1, DefaultDeviceType = "sensor", FirstDataField = 1, Keys = ["temperature", "humidity"] };
        var batch = Convert(Uplink(configuration), "SN-9;21;40");
        Assert.Equal("sensor", batch[0].DeviceType);
        Assert.Equal([new TsKvEntry(Now, new KvEntry("temperature", 21L)), new TsKvEntry(Now, new KvEntry("humidity", 40L))], batch[0].Telemetry);
    }

    [Fact]
    public void CsvConverter_RejectsALineWithoutADeviceName()
    {
        var batch = new UplinkBatch();
        Assert.False(Uplink(TcpConverterConfiguration.CsvDefault()).TryConvert(",default,t,1"u8, batch, out var error));
        Assert.Contains("deviceName", error);
    }

    [Fact]
    public void CsvConverter_DoesNotAllocate_ForAKnownDevice()
    {
        var converter = Uplink(TcpConverterConfiguration.CsvDefault());
        var batch = new UplinkBatch();
        var line = "SN-002,default,temperature,25.7,humidity,69"u8.ToArray();
        for (int i = 0; i < 10; i++)
        {
            batch.Clear();
            converter.TryConvert(line, batch, out _);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            batch.Clear();
            converter.TryConvert(line, batch, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void JsonConverter_PassesTheOutputShapeThrough()
    {
        var converter = Uplink(new TcpConverterConfiguration { ScriptLang = TcpScriptLang.JSON });
        var batch = Convert(converter, """[{"deviceName":"a","deviceType":"t","ts":5,"telemetry":{"x":1},"attributes":{"fw":"1.0"}},{"deviceName":"b","telemetry":[{"ts":7,"values":{"y":2.5}}]}]""");
        Assert.Equal(2, batch.Count);
        Assert.Equal([new TsKvEntry(5, new KvEntry("x", 1L))], batch[0].Telemetry);
        Assert.Equal([new KvEntry("fw", "1.0")], batch[0].Attributes);
        Assert.Equal("default", batch[1].DeviceType);
        Assert.Equal([new TsKvEntry(7, new KvEntry("y", 2.5))], batch[1].Telemetry);
    }

    [Theory]
    [InlineData("""{"deviceName":"a","telemetry":5}""")]
    [InlineData("""{"deviceName":"","telemetry":{}}""")]
    [InlineData("""{"deviceName":"a",""")]
    [InlineData("""[1]""")]
    public void JsonConverter_RejectsMalformedOutput(string payload) =>
        Assert.False(Uplink(new TcpConverterConfiguration { ScriptLang = TcpScriptLang.JSON }).TryConvert(Encoding.UTF8.GetBytes(payload), new UplinkBatch(), out _));

    [Fact]
    public void SeedEncoder_WritesTheAttributeUpdateAsJson()
    {
        var encoder = TcpIntegration.CreateDownlinkConverter(TcpConverterConfiguration.JsEncoder(SeedScripts.Encoder), NoMetadata);
        var output = new ArrayBufferWriter<byte>();
        var metadata = new Dictionary<string, string> { ["deviceName"] = "SN-002", ["deviceType"] = "default" };
        Assert.True(encoder.TryEncode("""{"powerState":"on"}""", "ATTRIBUTES_UPDATED", metadata, output, out var error), error);
        Assert.Equal("""{"powerState":"on"}""", Encoding.UTF8.GetString(output.WrittenSpan));
    }

    [Fact]
    public void JsEncoder_DecodesBinaryDataFromBase64_AndReportsErrors()
    {
        var binary = TcpIntegration.CreateDownlinkConverter(
            TcpConverterConfiguration.JsEncoder("return { contentType: 'BINARY', data: bytesToBase64([1, 2, 255]), metadata: {} };"), NoMetadata);
        var output = new ArrayBufferWriter<byte>();
        Assert.True(binary.TryEncode("{}", "RPC_CALL_FROM_SERVER_TO_DEVICE", NoMetadata, output, out var error), error);
        Assert.Equal(new byte[] { 1, 2, 255 }, output.WrittenSpan.ToArray());

        var failing = TcpIntegration.CreateDownlinkConverter(TcpConverterConfiguration.JsEncoder("return msg.a.b;"), NoMetadata);
        Assert.False(failing.TryEncode("{}", "ATTRIBUTES_UPDATED", NoMetadata, new ArrayBufferWriter<byte>(), out error));
        Assert.NotNull(error);
    }
}
