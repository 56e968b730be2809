using System.Diagnostics.CodeAnalysis;
using System.Text;
using Perf.Core.Telemetry;
using Perf.Kestrel.Tcp.Internal;

namespace Perf.Kestrel.Tcp;

/// <summary>
/// One running TCP integration: its configuration compiled into a framer and converters, and its event
/// logs. Shared by every connection on the integration's port; build a new instance to apply a changed
/// configuration (scripts are compiled here, so a bad script fails <see cref="Create"/>, not a connection).
/// </summary>
public sealed class TcpIntegration
{
    private readonly Encoding? _transcodeFrom;

    private TcpIntegration(TcpIntegrationOptions options, KeyTable keys, Func<long> clock)
    {
        Options = options;
        var handler = options.ClientConfiguration.HandlerConfiguration;
        Framer = TcpFramer.Create(handler);
        if (handler.HandlerType == TcpHandlerType.TEXT)
        {
            var charset = TcpFramer.ResolveCharset(handler.CharsetName);
            _transcodeFrom = charset.CodePage == Encoding.UTF8.CodePage ? null : charset;
        }

        UplinkConverter = CreateUplinkConverter(options.UplinkConverter, options.Metadata, keys, clock);
        DownlinkConverter = options.DownlinkConverter is { } downlink ? CreateDownlinkConverter(downlink, options.Metadata) : null;
    }

    public string Name => Options.Name;

    public TcpIntegrationOptions Options { get; }

    public IUplinkConverter UplinkConverter { get; }

    public IDownlinkConverter? DownlinkConverter { get; }

    /// <summary>Uplink converter events: In (payload), Out (decoded messages), Error (script or shape errors).</summary>
    public ConverterEventLog UplinkEvents { get; } = new();

    /// <summary>Downlink converter events: In (rule-engine message), Out (encoded payload), Error.</summary>
    public ConverterEventLog DownlinkEvents { get; } = new();

    /// <summary>Integration events: framing errors, rejected uplinks (sink failures).</summary>
    public ConverterEventLog IntegrationEvents { get; } = new();

    internal TcpFramer Framer { get; }

    /// <summary>Downlinks waiting for disconnected devices, by device id.</summary>
    internal System.Collections.Concurrent.ConcurrentDictionary<Guid, ParkedDownlinks> Parked { get; } = new();

    /// <summary>Text frames in another charset are transcoded to UTF-8 before conversion; null for UTF-8 and binary.</summary>
    internal Encoding? TranscodeFrom => _transcodeFrom;

    /// <param name="keys">The process-wide key table (Core's), so converted keys are the same string instances as every other door's.</param>
    /// <param name="clock">Unix milliseconds for entries without a ts; defaults to the system clock.</param>
    /// <exception cref="ArgumentException">The configuration is invalid or a script does not compile.</exception>
    public static TcpIntegration Create(TcpIntegrationOptions options, KeyTable? keys = null, Func<long>? clock = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new TcpIntegration(options, keys ?? new KeyTable(), clock ?? (static () => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()));
    }

    /// <summary>Builds an uplink converter (also the "test decoder" endpoint's entry point).</summary>
    public static IUplinkConverter CreateUplinkConverter(TcpConverterConfiguration configuration, IReadOnlyDictionary<string, string> metadata, KeyTable keys, Func<long> clock) =>
        configuration.ScriptLang switch
        {
            TcpScriptLang.JS => new JsUplinkConverter(
                configuration.Decoder ?? throw new ArgumentException("a JS uplink converter needs a decoder", nameof(configuration)),
                configuration,
                metadata,
                keys,
                clock),
            TcpScriptLang.JSON => new JsonPassthroughConverter(keys, clock),
            TcpScriptLang.CSV => new CsvUplinkConverter(configuration.Csv, keys, new KeyTable(), clock),
            _ => throw new ArgumentOutOfRangeException(nameof(configuration), configuration.ScriptLang, "unknown scriptLang"),
        };

    /// <summary>Builds a downlink converter (JavaScript encoder).</summary>
    public static IDownlinkConverter CreateDownlinkConverter(TcpConverterConfiguration configuration, IReadOnlyDictionary<string, string> integrationMetadata) =>
        configuration.ScriptLang == TcpScriptLang.JS
            ? new JsDownlinkConverter(
                configuration.Encoder ?? throw new ArgumentException("a JS downlink converter needs an encoder", nameof(configuration)),
                configuration,
                integrationMetadata)
            : throw new ArgumentException("downlink converters are JavaScript encoders", nameof(configuration));

    /// <summary>
    /// Runs a decoder against a sample payload without an integration (the reference's "Test payload decoder").
    /// Returns the decoded messages rendered as text, or the error.
    /// </summary>
    public static (bool Ok, string Output) TestDecoder(TcpConverterConfiguration configuration, ReadOnlySpan<byte> payload, IReadOnlyDictionary<string, string>? metadata = null)
    {
        try
        {
            var converter = CreateUplinkConverter(configuration, metadata ?? new Dictionary<string, string>(), new KeyTable(), static () => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            var batch = new UplinkBatch();
            return converter.TryConvert(payload, batch, out var error) ? (true, batch.ToString()) : (false, error ?? "conversion failed");
        }
        catch (ArgumentException ex)
        {
            return (false, ex.Message);
        }
    }

    /// <summary>Converts one frame, recording converter events. False when the converter rejected it.</summary>
    internal bool Decode(ReadOnlySpan<byte> payload, UplinkBatch output, [NotNullWhen(false)] out string? error)
    {
        output.Clear();
        bool debug = Options.DebugMode;
        if (debug)
        {
            UplinkEvents.Record(ConverterEventType.In, Encoding.UTF8.GetString(payload));
        }

        if (!UplinkConverter.TryConvert(payload, output, out error))
        {
            error ??= "conversion failed";
            UplinkEvents.Record(ConverterEventType.Error, error, Encoding.UTF8.GetString(payload));
            return false;
        }

        UplinkEvents.CountMessage();
        if (debug)
        {
            UplinkEvents.Record(ConverterEventType.Out, output.ToString());
        }

        return true;
    }
}
