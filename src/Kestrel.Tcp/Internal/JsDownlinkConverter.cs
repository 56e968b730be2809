using System.Buffers;
using System.Text;
using Jint;
using Jint.Native;
using Jint.Native.Json;
using Jint.Runtime;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// Runs the user's encoder as the reference wraps it,
/// <c>function Encoder(msg, metadata, msgType, integrationMetadata) { &lt;script&gt; }</c>, which returns
/// <c>{contentType, data, metadata}</c>. <c>data</c> is written as UTF-8 for JSON and TEXT and decoded from
/// base64 for BINARY (the reference's convention); a non-string <c>data</c> is written as its JSON.
/// </summary>
internal sealed class JsDownlinkConverter : IDownlinkConverter
{
    private readonly JsEnginePool _pool;
    private readonly IReadOnlyDictionary<string, string> _integrationMetadata;

    public JsDownlinkConverter(string encoder, TcpConverterConfiguration limits, IReadOnlyDictionary<string, string> integrationMetadata)
    {
        _pool = new JsEnginePool("Encoder", "function Encoder(msg, metadata, msgType, integrationMetadata) {\n" + encoder + "\n}", limits, 2);
        _integrationMetadata = integrationMetadata;
    }

    public bool TryEncode(string msgJson, string msgType, IReadOnlyDictionary<string, string> metadata, IBufferWriter<byte> output, out string? error)
    {
        var js = _pool.Rent();
        try
        {
            var engine = js.Engine;
            var msg = new JsonParser(engine).Parse(msgJson);
            var result = engine.Invoke(js.Function, JsValue.Undefined, [msg, js.NewObject(metadata), new JsString(msgType), js.NewObject(_integrationMetadata)]);
            if (!result.IsObject())
            {
                error = "encoder must return {contentType, data, metadata}";
                return false;
            }

            var obj = result.AsObject();
            var data = obj.Get("data");
            string contentType = obj.Get("contentType") is { } ct && ct.IsString() ? ct.AsString() : "JSON";
            if (data.IsUndefined() || data.IsNull())
            {
                error = "encoder returned no data";
                return false;
            }

            if (data.IsString())
            {
                string text = data.AsString();
                if (string.Equals(contentType, "BINARY", StringComparison.OrdinalIgnoreCase))
                {
                    output.Write(Convert.FromBase64String(text));
                }
                else
                {
                    var span = output.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length));
                    output.Advance(Encoding.UTF8.GetBytes(text, span));
                }
            }
            else
            {
                js.Serializer.Serialize(data, output);
            }

            error = null;
            return true;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            error = ex is FormatException ? "BINARY data is not base64" : JsEngine.Describe(ex);
            return false;
        }
        finally
        {
            _pool.Return(js);
        }
    }
}
