using System.Text.Json.Serialization;

namespace Perf.Kestrel.Tcp;

/// <summary>
/// The full configuration of ONE TCP integration (one port). Property names follow the reference
/// platform's integration JSON (<c>POST /api/integration</c>, camelCase on the wire), so an exported
/// configuration binds as it is from appsettings or a REST body; several integrations are several
/// instances on different ports.
/// </summary>
public sealed class TcpIntegrationOptions
{
    /// <summary>Integration name, used in logs and events.</summary>
    public string Name { get; set; } = "TCP integration";

    public bool Enabled { get; set; } = true;

    /// <summary>Reference: allowCreateDevicesOrAssets. Passed to the sink, which creates unknown devices by name when true.</summary>
    public bool AllowCreateDevicesOrAssets { get; set; } = true;

    /// <summary>Record In/Out events for every message, not only errors (reference: debugMode; costs allocations per message).</summary>
    public bool DebugMode { get; set; }

    /// <summary>Reference: configuration.clientConfiguration.</summary>
    public TcpClientConfiguration ClientConfiguration { get; set; } = new();

    /// <summary>Reference: configuration.metadata. Key/values handed to every converter call as <c>metadata</c>.</summary>
    public Dictionary<string, string> Metadata { get; set; } = new(StringComparer.Ordinal);

    /// <summary>The uplink converter (reference: defaultConverterId resolved to its configuration).</summary>
    public TcpConverterConfiguration UplinkConverter { get; set; } = TcpConverterConfiguration.CsvDefault();

    /// <summary>The downlink converter (reference: downlinkConverterId); null: no downlinks.</summary>
    public TcpConverterConfiguration? DownlinkConverter { get; set; }

    /// <summary>
    /// An oversized frame is a protocol violation that closes its connection (default; other connections
    /// are unaffected). When true the frame is skipped instead (up to the next separator, or the length the
    /// length field announced) and the connection goes on, as Netty's frame decoders discard. JSON framing
    /// has no resynchronization point and always closes.
    /// </summary>
    public bool DropOversizedFrames { get; set; }

    /// <summary>
    /// How long the sessions of a closed connection keep queuing downlinks for their device's next
    /// connection (seconds; 0: downlinks for a disconnected device are dropped). Until then the host keeps
    /// seeing the session as registered; it is closed through <see cref="ITcpUplinkSink.OnSessionClosed"/>
    /// when the time is up or the device reconnects.
    /// </summary>
    public int OfflineDownlinkSeconds { get; set; } = 300;

    /// <summary>Downlinks queued per disconnected device; further pushes are refused.</summary>
    public int OfflineDownlinkCapacity { get; set; } = 16;

    /// <summary>Longest text frame (kept for the host's flat settings; same as HandlerConfiguration.MaxFrameLength).</summary>
    [JsonIgnore]
    public int MaxFrameLength
    {
        get => ClientConfiguration.HandlerConfiguration.MaxFrameLength;
        set => ClientConfiguration.HandlerConfiguration.MaxFrameLength = value;
    }
}

/// <summary>Socket settings of the integration's listener (reference: clientConfiguration).</summary>
public sealed class TcpClientConfiguration
{
    public int Port { get; set; } = 10560;

    /// <summary>Listen backlog; applied by the host when it binds the listen socket.</summary>
    public int SoBacklogOption { get; set; } = 128;

    /// <summary>Receive buffer size in KB, applied per accepted connection.</summary>
    public int SoRcvBuf { get; set; } = 64;

    /// <summary>Send buffer size in KB, applied per accepted connection.</summary>
    public int SoSndBuf { get; set; } = 64;

    public bool SoKeepaliveOption { get; set; }

    public bool TcpNoDelay { get; set; } = true;

    public TcpHandlerConfiguration HandlerConfiguration { get; set; } = new();
}

/// <summary>How the byte stream is cut into messages (reference: handlerConfiguration).</summary>
public sealed class TcpHandlerConfiguration
{
    public TcpHandlerType HandlerType { get; set; } = TcpHandlerType.TEXT;

    /// <summary>Longest frame in bytes (delimiter excluded; for BINARY the whole frame as Netty counts it). Reference default 128.</summary>
    public int MaxFrameLength { get; set; } = 128;

    /// <summary>TEXT: remove the separator from the frame handed to the converter.</summary>
    public bool StripDelimiter { get; set; } = true;

    public TcpMessageSeparator MessageSeparator { get; set; } = TcpMessageSeparator.SYSTEM_LINE_SEPARATOR;

    /// <summary>TEXT with CUSTOM_SEPARATOR: the separator string, encoded with <see cref="CharsetName"/>.</summary>
    public string? CustomSeparator { get; set; }

    /// <summary>TEXT: charset of the device's text; frames are transcoded to UTF-8 for the converter.</summary>
    public string CharsetName { get; set; } = "UTF-8";

    public TcpByteOrder ByteOrder { get; set; } = TcpByteOrder.LITTLE_ENDIAN;
    public int LengthFieldOffset { get; set; }
    public int LengthFieldLength { get; set; } = 2;
    public int LengthAdjustment { get; set; }
    public int InitialBytesToStrip { get; set; }

    /// <summary>BINARY: Netty's failFast. Both values reject an oversized frame from its length field, before buffering it; the frame is then skipped.</summary>
    public bool FailFast { get; set; } = true;
}

// Enum member names are the reference's wire values so JSON and configuration bind them unchanged.
[JsonConverter(typeof(JsonStringEnumConverter<TcpHandlerType>))]
public enum TcpHandlerType
{
    TEXT,
    BINARY,
    JSON,
}

[JsonConverter(typeof(JsonStringEnumConverter<TcpMessageSeparator>))]
public enum TcpMessageSeparator
{
    SYSTEM_LINE_SEPARATOR,
    NUL_DELIMITER,
    CUSTOM_SEPARATOR,
}

[JsonConverter(typeof(JsonStringEnumConverter<TcpByteOrder>))]
public enum TcpByteOrder
{
    LITTLE_ENDIAN,
    BIG_ENDIAN,
}

/// <summary>
/// A converter's configuration (reference: the converter entity's <c>configuration</c>):
/// <c>{"scriptLang":"JS","decoder":"..."}</c> for uplink, <c>{"scriptLang":"JS","encoder":"..."}</c> for downlink.
/// Our built-in uplink converters are selected with scriptLang <c>JSON</c> or <c>CSV</c>.
/// </summary>
public sealed class TcpConverterConfiguration
{
    public TcpScriptLang ScriptLang { get; set; } = TcpScriptLang.JS;

    /// <summary>Uplink JavaScript: the body of <c>function Decoder(payload, metadata)</c>.</summary>
    public string? Decoder { get; set; }

    /// <summary>Downlink JavaScript: the body of <c>function Encoder(msg, metadata, msgType, integrationMetadata)</c>.</summary>
    public string? Encoder { get; set; }

    /// <summary>Settings of the built-in CSV converter (scriptLang CSV).</summary>
    public TcpCsvConverterOptions Csv { get; set; } = new();

    /// <summary>Per-call wall-clock limit of a script.</summary>
    public int ScriptTimeoutMs { get; set; } = 1000;

    /// <summary>Per-call allocation limit of a script, in bytes.</summary>
    public long ScriptMemoryLimitBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>Deepest script call stack.</summary>
    public int ScriptRecursionLimit { get; set; } = 64;

    public static TcpConverterConfiguration CsvDefault() => new() { ScriptLang = TcpScriptLang.CSV };

    public static TcpConverterConfiguration JsDecoder(string decoder) => new() { ScriptLang = TcpScriptLang.JS, Decoder = decoder };

    public static TcpConverterConfiguration JsEncoder(string encoder) => new() { ScriptLang = TcpScriptLang.JS, Encoder = encoder };
}

[JsonConverter(typeof(JsonStringEnumConverter<TcpScriptLang>))]
public enum TcpScriptLang
{
    /// <summary>JavaScript run by Jint, exactly as the reference wraps it.</summary>
    JS,

    /// <summary>Built-in: the payload already is the converter output shape (one object or an array).</summary>
    JSON,

    /// <summary>Built-in: <c>name,type,key,value,key,value...</c> (the seed's decoder, without a script).</summary>
    CSV,
}

/// <summary>
/// The built-in CSV converter. Default layout is the seed's: field 0 device name, field 1 device type,
/// then alternating key,value pairs. With <see cref="Keys"/> set, values are positional from
/// <see cref="FirstDataField"/> on and the keys come from the list.
/// </summary>
public sealed class TcpCsvConverterOptions
{
    public char Separator { get; set; } = ',';
    public int DeviceNameField { get; set; }

    /// <summary>Field of the device type; negative: always <see cref="DefaultDeviceType"/>.</summary>
    public int DeviceTypeField { get; set; } = 1;

    public string DefaultDeviceType { get; set; } = "default";
    public int FirstDataField { get; set; } = 2;

    /// <summary>Fixed telemetry keys for positional values; null or empty: key,value pairs.</summary>
    public List<string>? Keys { get; set; }
}
