using System.Buffers;
using System.Text;
using Acornima.Ast;
using Jint;
using Jint.Native;
using Jint.Native.Json;
using Jint.Runtime;
using Jint.Runtime.Interop;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// A small pool of Jint engines for one converter script. A Jint <see cref="Engine"/> is not thread-safe,
/// so each call rents one exclusively; engines are created on demand when the pool is empty and dropped
/// on return when it is full. Parsing happens once: the prelude and the wrapped script are prepared
/// (immutable, shared by every engine), each engine only executes them.
/// </summary>
internal sealed class JsEnginePool
{
    // The reference's built-in helpers for integration converters, plus byte/hex/base64 helpers users expect.
    // decodeToString decodes UTF-8 natively (the reference's String.fromCharCode is the same for ASCII).
    private const string PreludeSource = """
        function decodeToString(payload) { return __decodeUtf8(payload); }
        function decodeToJson(payload) { return JSON.parse(decodeToString(payload)); }
        function bytesToString(payload) { return __decodeUtf8(payload); }
        function stringToBytes(str) { return __encodeUtf8(String(str)); }
        function bytesToHex(bytes) { var s = ''; for (var i = 0; i < bytes.length; i++) { var h = (bytes[i] & 0xFF).toString(16); s += h.length < 2 ? '0' + h : h; } return s; }
        function hexToBytes(hex) { var out = []; for (var i = 0; i + 1 < hex.length; i += 2) { out.push(parseInt(hex.substr(i, 2), 16)); } return out; }
        function bytesToBase64(bytes) { return __bytesToBase64(bytes); }
        function base64ToBytes(b64) { return __base64ToBytes(String(b64)); }
        """;

    private static readonly Prepared<Script> Prelude = Engine.PrepareScript(PreludeSource, "prelude");

    private readonly Prepared<Script> _script;
    private readonly string _functionName;
    private readonly TcpConverterConfiguration _limits;
    private readonly JsEngine?[] _slots;

    /// <param name="functionName">Decoder or Encoder.</param>
    /// <param name="wrappedSource">The user's script already wrapped in its function declaration.</param>
    public JsEnginePool(string functionName, string wrappedSource, TcpConverterConfiguration limits, int size)
    {
        try
        {
            _script = Engine.PrepareScript(wrappedSource, functionName);
        }
        catch (Exception ex)
        {
            throw new ArgumentException($"{functionName} script does not compile: {ex.Message}", nameof(wrappedSource), ex);
        }

        _functionName = functionName;
        _limits = limits;
        _slots = new JsEngine?[Math.Max(1, size)];
    }

    public JsEngine Rent()
    {
        for (int i = 0; i < _slots.Length; i++)
        {
            var engine = Interlocked.Exchange(ref _slots[i], null);
            if (engine is not null)
            {
                return engine;
            }
        }

        return new JsEngine(CreateEngine(), _functionName);
    }

    public void Return(JsEngine engine)
    {
        engine.Output.ResetWrittenCount();
        for (int i = 0; i < _slots.Length; i++)
        {
            if (Interlocked.CompareExchange(ref _slots[i], engine, null) is null)
            {
                return;
            }
        }
    }

    private Engine CreateEngine()
    {
        var engine = new Engine(options => options
            .TimeoutInterval(TimeSpan.FromMilliseconds(Math.Max(1, _limits.ScriptTimeoutMs)))
            .LimitMemory(_limits.ScriptMemoryLimitBytes)
            .LimitRecursion(_limits.ScriptRecursionLimit));
        engine.SetValue("__decodeUtf8", new ClrFunction(engine, "__decodeUtf8", (_, args) => DecodeUtf8(args.Length > 0 ? args[0] : JsValue.Undefined)));
        engine.SetValue("__encodeUtf8", new ClrFunction(engine, "__encodeUtf8", (_, args) => ToJsArray(engine, Encoding.UTF8.GetBytes(TypeConverter.ToString(args[0])))));
        engine.SetValue("__bytesToBase64", new ClrFunction(engine, "__bytesToBase64", (_, args) => Convert.ToBase64String(ToBytes(args[0]))));
        engine.SetValue("__base64ToBytes", new ClrFunction(engine, "__base64ToBytes", (_, args) => ToJsArray(engine, Convert.FromBase64String(TypeConverter.ToString(args[0])))));
        engine.Execute(Prelude);
        engine.Execute(_script);
        return engine;
    }

    public static JsArray ToJsArray(Engine engine, ReadOnlySpan<byte> bytes)
    {
        var values = new JsValue[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
        {
            values[i] = JsNumber.Create(bytes[i]);
        }

        return new JsArray(engine, values);
    }

    private static JsValue DecodeUtf8(JsValue value)
    {
        if (value.IsString())
        {
            return value;
        }

        return new JsString(Encoding.UTF8.GetString(ToBytes(value)));
    }

    // A JS array of numbers (0..255, or signed -128..127 as Java bytes arrive) as bytes.
    private static byte[] ToBytes(JsValue value)
    {
        if (value is not JsArray array)
        {
            return [];
        }

        var bytes = new byte[array.Length];
        for (uint i = 0; i < bytes.Length; i++)
        {
            bytes[i] = (byte)((int)TypeConverter.ToNumber(array[i]) & 0xFF);
        }

        return bytes;
    }
}

/// <summary>One engine with its converter function and scratch buffers; used by one caller at a time.</summary>
internal sealed class JsEngine
{
    public JsEngine(Engine engine, string functionName)
    {
        Engine = engine;
        Function = engine.GetValue(functionName);
        Serializer = new JsonSerializer(engine);
    }

    public Engine Engine { get; }
    public JsValue Function { get; }
    public JsonSerializer Serializer { get; }
    public ArrayBufferWriter<byte> Output { get; } = new(256);

    public JsObject NewObject(IReadOnlyDictionary<string, string> values)
    {
        var obj = new JsObject(Engine);
        foreach (var (key, value) in values)
        {
            obj.Set(key, value);
        }

        return obj;
    }

    /// <summary>A script failure as one line for converter events.</summary>
    public static string Describe(Exception ex) => ex switch
    {
        JavaScriptException js => $"JavaScript error: {js.Message} at {js.Location.Start.Line}:{js.Location.Start.Column}",
        TimeoutException => "script timed out",
        MemoryLimitExceededException => "script exceeded its memory limit: " + ex.Message,
        RecursionDepthOverflowException => "script exceeded its recursion limit",
        _ => $"{ex.GetType().Name}: {ex.Message}",
    };
}
