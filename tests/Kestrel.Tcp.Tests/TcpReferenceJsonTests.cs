using System.Text.Json;

namespace Perf.Kestrel.Tcp.Tests;

public sealed class TcpReferenceJsonTests
{
    [Fact]
    public void ReferenceEntities_ImportAsTheyAre()
    {
        using var converter = JsonDocument.Parse("""
            {"name":"TCP Uplink Converter","type":"UPLINK","configuration":{"scriptLang":"JS","decoder":"return {deviceName:'a',deviceType:'b'};"}}
            """);
        using var integration = JsonDocument.Parse("""
            {"name":"TCP integration","type":"TCP","enabled":true,"allowCreateDevicesOrAssets":false,
             "defaultConverterId":{"entityType":"CONVERTER","id":"5b0ae2a0-1c3c-11ee-8c3b-7d4f3a5d1e01"},
             "configuration":{"clientConfiguration":{"port":10561,"soBacklogOption":256,"soRcvBuf":"32","soSndBuf":64,
               "soKeepaliveOption":true,"tcpNoDelay":false,
               "handlerConfiguration":{"handlerType":"BINARY","maxFrameLength":1024,"stripDelimiter":true,
                 "messageSeparator":"CUSTOM_SEPARATOR","customSeparator":";","charsetName":"ISO-8859-1",
                 "byteOrder":"BIG_ENDIAN","lengthFieldOffset":1,"lengthFieldLength":4,"lengthAdjustment":-2,
                 "initialBytesToStrip":5,"failFast":false}},
               "metadata":{"site":"north","floor":3}}}
            """);

        var uplink = TcpReferenceJson.ReadConverterConfiguration(converter.RootElement.GetProperty("configuration"));
        var options = TcpReferenceJson.ReadIntegration(integration.RootElement, uplink, null);

        Assert.Equal(TcpScriptLang.JS, options.UplinkConverter.ScriptLang);
        Assert.Equal("TCP integration", options.Name);
        Assert.False(options.AllowCreateDevicesOrAssets);
        Assert.Equal(Guid.Parse("5b0ae2a0-1c3c-11ee-8c3b-7d4f3a5d1e01"), TcpReferenceJson.ConverterId(integration.RootElement, "defaultConverterId"));
        Assert.Null(TcpReferenceJson.ConverterId(integration.RootElement, "downlinkConverterId"));
        var client = options.ClientConfiguration;
        Assert.Equal((10561, 256, 32, 64, true, false), (client.Port, client.SoBacklogOption, client.SoRcvBuf, client.SoSndBuf, client.SoKeepaliveOption, client.TcpNoDelay));
        var handler = client.HandlerConfiguration;
        Assert.Equal(TcpHandlerType.BINARY, handler.HandlerType);
        Assert.Equal(TcpMessageSeparator.CUSTOM_SEPARATOR, handler.MessageSeparator);
        Assert.Equal(TcpByteOrder.BIG_ENDIAN, handler.ByteOrder);
        Assert.Equal((1024, ";", "ISO-8859-1", 1, 4, -2, 5, false), (handler.MaxFrameLength, handler.CustomSeparator, handler.CharsetName, handler.LengthFieldOffset, handler.LengthFieldLength, handler.LengthAdjustment, handler.InitialBytesToStrip, handler.FailFast));
        Assert.Equal("north", options.Metadata["site"]);
        Assert.Equal("3", options.Metadata["floor"]);

        // And it runs.
        Assert.NotNull(TcpIntegration.Create(options));
    }

    [Fact]
    public void OptionsRoundTrip_WithTheReferencesEnumNames()
    {
        var json = JsonSerializer.Serialize(new TcpIntegrationOptions().ClientConfiguration, TcpReferenceJson.SerializerOptions);
        Assert.Contains("\"handlerType\":\"TEXT\"", json);
        Assert.Contains("\"messageSeparator\":\"SYSTEM_LINE_SEPARATOR\"", json);
        Assert.Contains("\"byteOrder\":\"LITTLE_ENDIAN\"", json);
    }

    [Fact]
    public void NonTcpIntegrations_AreRejected()
    {
        using var doc = JsonDocument.Parse("""{"name":"x","type":"MQTT"}""");
        Assert.Throws<JsonException>(() => TcpReferenceJson.ReadIntegration(doc.RootElement, TcpConverterConfiguration.CsvDefault(), null));
    }
}
