using Jint;
using Jint.Native;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// Runs the user's decoder exactly as the reference wraps it,
/// <c>function Decoder(payload, metadata) { &lt;script&gt; }</c>, with <c>payload</c> the frame as an array of
/// byte values and <c>metadata</c> the integration's metadata key/values. The returned value is serialized
/// to JSON inside the engine and read as the reference's uplink output shape.
/// </summary>
internal sealed class JsUplinkConverter : IUplinkConverter
{
    private readonly JsEnginePool _pool;
    private readonly IReadOnlyDictionary<string, string> _metadata;
    private readonly KeyTable _keys;
    private readonly Func<long> _clock;

    public JsUplinkConverter(string decoder, TcpConverterConfiguration limits, IReadOnlyDictionary<string, string> metadata, KeyTable keys, Func<long> clock)
    {
        _pool = new JsEnginePool("Decoder", "function Decoder(payload, metadata) {\n" + decoder + "\n}", limits, Environment.ProcessorCount);
        _metadata = metadata;
        _keys = keys;
        _clock = clock;
    }

    public bool TryConvert(ReadOnlySpan<byte> payload, UplinkBatch output, out string? error)
    {
        var js = _pool.Rent();
        try
        {
            var engine = js.Engine;
            var result = engine.Invoke(js.Function, JsValue.Undefined, [JsEnginePool.ToJsArray(engine, payload), js.NewObject(_metadata)]);
            if (result.IsUndefined() || result.IsNull())
            {
                error = "decoder returned no result";
                return false;
            }

            js.Serializer.Serialize(result, js.Output);
            return UplinkOutputReader.TryRead(js.Output.WrittenSpan, _clock(), _keys, output, out error);
        }
        catch (Exception ex)
        {
            error = JsEngine.Describe(ex);
            return false;
        }
        finally
        {
            _pool.Return(js);
        }
    }
}
