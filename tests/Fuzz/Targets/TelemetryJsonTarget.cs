using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Perf.Core.Telemetry;
using Perf.Fuzz.Harness;

namespace Perf.Fuzz.Targets;

/// <summary>
/// The telemetry and attribute JSON parser (<see cref="TelemetryJsonParser"/>), over a contiguous span and
/// over multi-segment sequences (one byte per segment and random cuts), as MQTT hands it split payloads.
/// Invariants: it never throws (a rejection is a false result with a <see cref="JsonParseError"/>);
/// span and sequence agree on the result, the entries and the error; an accepted payload rendered back
/// to JSON parses to the same entries; doubles are finite.
/// </summary>
internal sealed class TelemetryJsonTarget : FuzzTarget
{
    private const long NowTs = 1_700_000_000_000;

    public override string Name => "telemetry-json";

    public override string Description => "TelemetryJsonParser.TryParseTelemetry/TryParseAttributes, span vs segmented sequence, render round trip";

    public override IReadOnlyList<byte[]> Dictionary { get; } =
    [
        .. new[]
        {
            "{", "}", "[", "]", ",", ":", "\"", "\"ts\"", "\"values\"", "\"ts\":1451649600512", "\"values\":{", "null", "true", "false", "1e400", "-0",
            "9223372036854775808", "-9223372036854775809", "1.5E-7", "\\u0000", "\\ud800", "\\ud83d\\ude00", "\\\"", "\u00e9", "\U0001F600", " ", "\n", "//",
            "\"\":1",
        }.Select(Encoding.UTF8.GetBytes),
        [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xFF], [0xEF, 0xBB, 0xBF],
    ];

    public override ulong Run(ReadOnlySpan<byte> input)
    {
        var signature = new Signature();
        var data = input.ToArray();
        string? telemetryReference = null, attributesReference = null;
        foreach (var (plan, cuts) in Segmenter.Plans(input))
        {
            string telemetry, attributes;
            var keys = new KeyTable();
            var ts = new List<TsKvEntry>();
            var kv = new List<KvEntry>();
            bool tsOk, kvOk;
            JsonParseError tsError, kvError;
            if (cuts.Length == 0)
            {
                tsOk = TelemetryJsonParser.TryParseTelemetry(input, NowTs, keys, ts, out tsError);
                kvOk = TelemetryJsonParser.TryParseAttributes(input, keys, kv, out kvError);
            }
            else
            {
                var sequence = Split(data, cuts);
                tsOk = TelemetryJsonParser.TryParseTelemetry(sequence, NowTs, keys, ts, out tsError);
                kvOk = TelemetryJsonParser.TryParseAttributes(sequence, keys, kv, out kvError);
            }

            telemetry = Describe(tsOk, ts.Select(e => $"{e.Ts}:{Describe(e.Entry)}"), tsError);
            attributes = Describe(kvOk, kv.Select(Describe), kvError);
            if (telemetryReference is null)
            {
                telemetryReference = telemetry;
                attributesReference = attributes;
                signature.Add(tsOk ? 1UL : 2UL);
                signature.Add(kvOk ? 1UL : 2UL);
                signature.Add(ErrorKind(tsError));
                signature.Add(ErrorKind(kvError));
                foreach (var type in ts.Select(e => e.Entry.Type).Concat(kv.Select(e => e.Type)).Distinct())
                {
                    signature.Add(10 + (ulong)type);
                }

                if (tsOk)
                {
                    RoundTripTelemetry(ts);
                }

                if (kvOk)
                {
                    RoundTripAttributes(kv);
                }
            }
            else
            {
                FuzzInvariantException.Check(telemetry == telemetryReference, $"telemetry read as '{plan}' differs from the span:\n--- span\n{telemetryReference}\n--- {plan}\n{telemetry}");
                FuzzInvariantException.Check(attributes == attributesReference, $"attributes read as '{plan}' differ from the span:\n--- span\n{attributesReference}\n--- {plan}\n{attributes}");
            }
        }

        return signature.Value;
    }

    private static ulong ErrorKind(JsonParseError error)
    {
        if (error.Message is null)
        {
            return 0;
        }

        // The message up to its first "at byte": the kind of error, not where.
        int at = error.Message.IndexOf(" at byte", StringComparison.Ordinal);
        var kind = new Signature();
        kind.Add(at > 0 ? error.Message[..at] : error.Message);
        return kind.Value;
    }

    private static ReadOnlySequence<byte> Split(byte[] data, int[] cuts)
    {
        var chunks = new List<ReadOnlyMemory<byte>>();
        int start = 0;
        foreach (int cut in cuts.Append(data.Length))
        {
            chunks.Add(data.AsMemory(start, cut - start));
            start = cut;
        }

        return BufferSegment.Sequence(chunks);
    }

    /// <summary>
    /// The outcome, with an error reduced to what and where: System.Text.Json words the same syntax error
    /// with more or less context depending on how much of the input one segment shows.
    /// </summary>
    private static string Describe(bool ok, IEnumerable<string> entries, JsonParseError error)
    {
        if (ok)
        {
            return "ok\n" + string.Join("\n", entries);
        }

        int detail = error.Message.IndexOf(": ", StringComparison.Ordinal);
        return $"rejected: {(detail > 0 ? error.Message[..detail] : error.Message)} @{error.BytePosition}";
    }

    private static string Describe(KvEntry e)
    {
        if (e.Type == DataType.Double)
        {
            FuzzInvariantException.Check(double.IsFinite(e.DoubleValue), $"non-finite double for '{e.Key}'");
        }

        FuzzInvariantException.Check(!string.IsNullOrEmpty(e.Key), "an entry with an empty key");
        return $"{e.Key}={e.Type}:{(e.Type is DataType.Double ? BitConverter.DoubleToInt64Bits(e.DoubleValue).ToString(CultureInfo.InvariantCulture) : e.ValueAsString())}";
    }

    private static void RoundTripTelemetry(List<TsKvEntry> entries)
    {
        if (entries.Any(e => TooDeep(e.Entry, 3)))
        {
            return;
        }

        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartArray();
            foreach (var e in entries)
            {
                w.WriteStartObject();
                w.WriteNumber("ts", e.Ts);
                w.WritePropertyName("values");
                w.WriteStartObject();
                WriteEntry(w, e.Entry);
                w.WriteEndObject();
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        var again = new List<TsKvEntry>();
        bool ok = TelemetryJsonParser.TryParseTelemetry(buffer.WrittenSpan, NowTs + 1, new KeyTable(), again, out var error);
        FuzzInvariantException.Check(ok, $"rendered telemetry is rejected: {error.Message}: {Encoding.UTF8.GetString(buffer.WrittenSpan)}");
        FuzzInvariantException.Equal(
            string.Join("\n", entries.Select(e => $"{e.Ts}:{Describe(e.Entry)}")),
            string.Join("\n", again.Select(e => $"{e.Ts}:{Describe(e.Entry)}")),
            "telemetry round trip");
    }

    private static void RoundTripAttributes(List<KvEntry> entries)
    {
        if (entries.Any(e => TooDeep(e, 1)))
        {
            return;
        }

        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { SkipValidation = true }))
        {
            // SkipValidation: duplicate keys are legal input and must survive the round trip.
            w.WriteStartObject();
            foreach (var e in entries)
            {
                WriteEntry(w, e);
            }

            w.WriteEndObject();
        }

        var again = new List<KvEntry>();
        bool ok = TelemetryJsonParser.TryParseAttributes(buffer.WrittenSpan, new KeyTable(), again, out var error);
        FuzzInvariantException.Check(ok, $"rendered attributes are rejected: {error.Message}: {Encoding.UTF8.GetString(buffer.WrittenSpan)}");
        FuzzInvariantException.Equal(string.Join("\n", entries.Select(Describe)), string.Join("\n", again.Select(Describe)), "attributes round trip");
    }

    /// <summary>A JSON value nested so deep that wrapping it in <paramref name="extra"/> more levels passes the parser's limit of 64.</summary>
    private static bool TooDeep(KvEntry e, int extra)
    {
        if (e.Type != DataType.Json)
        {
            return false;
        }

        var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(e.Text!), new JsonReaderOptions { MaxDepth = 1024 });
        int max = 0;
        while (reader.Read())
        {
            max = Math.Max(max, reader.CurrentDepth + 1);
        }

        return max + extra > 64;
    }

    private static void WriteEntry(Utf8JsonWriter w, KvEntry e)
    {
        w.WritePropertyName(e.Key);
        switch (e.Type)
        {
            case DataType.Boolean:
                w.WriteBooleanValue(e.BooleanValue);
                break;
            case DataType.Long:
                w.WriteNumberValue(e.LongValue);
                break;
            case DataType.Double:
                // "R" round-trips; keep a fraction so 1.0 stays a double and does not come back as a long. A whole
                // double in exponent form (1E+20) would come back as a long or an exact integer string (the
                // reference's rule for exponents): written plain with a fraction, it stays a double.
                var text = e.DoubleValue.ToString("R", CultureInfo.InvariantCulture);
                if (text.AsSpan().IndexOfAny('E', 'e') >= 0 && Math.Floor(e.DoubleValue) == e.DoubleValue)
                {
                    text = e.DoubleValue.ToString("F1", CultureInfo.InvariantCulture);
                }

                w.WriteRawValue(text.AsSpan().IndexOfAny('.', 'E', 'e') >= 0 ? text : text + ".0", skipInputValidation: true);
                break;
            case DataType.String:
                w.WriteStringValue(e.Text);
                break;
            default:
                w.WriteRawValue(e.Text!, skipInputValidation: true);
                break;
        }
    }

    public override IEnumerable<(string Name, byte[] Data)> Seeds()
    {
        yield return ("flat", "{\"temperature\":42,\"humidity\":73.5,\"active\":false,\"firmware\":\"1.0.2\"}"u8.ToArray());
        yield return ("ts", "{\"ts\":1451649600512,\"values\":{\"key1\":\"value1\",\"key2\":\"value2\"}}"u8.ToArray());
        yield return ("array", "[{\"ts\":1451649600512,\"values\":{\"key1\":\"value1\"}},{\"ts\":1451649601512,\"values\":{\"key2\":42}},{\"flat\":1}]"u8.ToArray());
        yield return ("json-values", "{\"stringKey\":\"value1\",\"booleanKey\":true,\"doubleKey\":42.0,\"longKey\":73,\"jsonKey\":{\"someNumber\":42,\"someArray\":[1,2,3],\"someNestedObject\":{\"key\":\"value\"}}}"u8.ToArray());
        yield return ("edge-numbers", "{\"big\":9223372036854775807,\"bigger\":9223372036854775808,\"neg\":-9223372036854775808,\"exp\":1e10,\"tiny\":5e-324,\"z\":-0.0,\"n\":null}"u8.ToArray());
        yield return ("escapes", "{\"k\\u00e9y\":\"line\\nbreak \\\"quoted\\\" \\ud83d\\ude00\",\"\u00fcml\u00e4ut\":\"\u00e9\"}"u8.ToArray());
        yield return ("ts-last", "{\"values\":{\"a\":1},\"ts\":1700000000000,\"extra\":[1,2]}"u8.ToArray());
        yield return ("pretty", "{\n  \"ts\": 1451649600512,\n  \"values\": {\n    \"temperature\": 26\n  }\n}\n"u8.ToArray());
    }
}
