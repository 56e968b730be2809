using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Perf.Core.Telemetry.Internal;

/// <summary>
/// Streams telemetry and attribute JSON into typed <see cref="KvEntry"/> values with
/// <see cref="Utf8JsonReader"/>: no DOM, no allocation for numbers, booleans and keys already in the
/// <see cref="KeyTable"/>. Syntax errors come from the reader as <see cref="JsonException"/>; shape
/// errors (a non-integer "ts", an empty key) are returned as <see cref="JsonParseError"/>.
/// </summary>
internal ref struct KvJsonReader
{
    // The reference's nesting limit is Jackson's default; 64 is also Utf8JsonReader's default.
    public const int MaxDepth = 64;

    // Keys longer than this are unescaped / joined across segments in a pooled array instead of the stack.
    private const int StackKeyLimit = 256;

    // Longest number (in bytes) joined on the stack when split across segments; longer ones take the reader's allocating path.
    private const int StackNumberLimit = 64;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static readonly JsonReaderOptions Options = new()
    {
        MaxDepth = MaxDepth,
        CommentHandling = JsonCommentHandling.Disallow,
        AllowTrailingCommas = false,
    };

    private readonly ReadOnlySpan<byte> _span;
    private readonly ReadOnlySequence<byte> _sequence;
    private readonly bool _isSequence;
    private readonly KeyTable _keys;
    private Utf8JsonReader _reader;
    private JsonParseError _error;

    public KvJsonReader(ReadOnlySpan<byte> json, KeyTable keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        _span = json;
        _sequence = default;
        _isSequence = false;
        _keys = keys;
        _reader = new Utf8JsonReader(json, Options);
        _error = default;
    }

    public KvJsonReader(ReadOnlySequence<byte> json, KeyTable keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        _span = default;
        _sequence = json;
        _isSequence = true;
        _keys = keys;
        _reader = new Utf8JsonReader(json, Options);
        _error = default;
    }

    private enum ObjectOutcome : byte
    {
        Ok,
        Failed,

        /// <summary>The object has both "ts" and "values": it is the timestamped form, not flat.</summary>
        IsTsForm,

        /// <summary>The object lacks "ts" or "values": it is flat, not the timestamped form.</summary>
        IsFlat,
    }

    /// <summary>Parses any of the four telemetry forms (see <see cref="TelemetryJsonParser"/>).</summary>
    public bool ParseTelemetry(long nowTs, List<TsKvEntry> output, out JsonParseError error)
    {
        ArgumentNullException.ThrowIfNull(output);
        try
        {
            bool ok = ReadFirstToken() && _reader.TokenType switch
            {
                JsonTokenType.StartObject => ParseTelemetryObject(nowTs, output),
                JsonTokenType.StartArray => ParseTelemetryArray(nowTs, output),
                _ => Fail($"expected a JSON object or array at byte {_reader.TokenStartIndex}", _reader.TokenStartIndex),
            };
            if (ok && EnsureEnd())
            {
                error = default;
                return true;
            }
        }
        catch (JsonException ex)
        {
            FailSyntax(ex);
        }

        error = _error;
        return false;
    }

    /// <summary>Parses a flat attribute object <c>{"k":v,...}</c>.</summary>
    public bool ParseAttributes(List<KvEntry> output, out JsonParseError error)
    {
        ArgumentNullException.ThrowIfNull(output);
        try
        {
            bool ok = ReadFirstToken() && (_reader.TokenType == JsonTokenType.StartObject
                ? ParseAttributeObject(output)
                : Fail($"expected a JSON object at byte {_reader.TokenStartIndex}", _reader.TokenStartIndex));
            if (ok && EnsureEnd())
            {
                error = default;
                return true;
            }
        }
        catch (JsonException ex)
        {
            FailSyntax(ex);
        }

        error = _error;
        return false;
    }

    private bool ReadFirstToken()
    {
        if (_reader.Read())
        {
            return true;
        }

        return Fail("empty payload", 0);
    }

    /// <summary>Trailing data after the top-level value: the reader throws for garbage; this covers whatever it lets through.</summary>
    private bool EnsureEnd()
    {
        if (!_reader.Read())
        {
            return true;
        }

        return Fail($"unexpected data after the JSON value at byte {_reader.TokenStartIndex}", _reader.TokenStartIndex);
    }

    /// <summary>Reads the next token; a well-formed final block never ends inside a value, so running out is a truncation.</summary>
    private void Next()
    {
        if (!_reader.Read())
        {
            ThrowTruncated();
        }
    }

    [DoesNotReturn]
    [System.Diagnostics.StackTraceHidden]
    private static void ThrowTruncated() => throw new JsonException("unexpected end of JSON");

    private bool ParseTelemetryArray(long nowTs, List<TsKvEntry> output)
    {
        while (true)
        {
            Next();
            switch (_reader.TokenType)
            {
                case JsonTokenType.EndArray:
                    return true;
                case JsonTokenType.StartObject:
                    if (!ParseTelemetryObject(nowTs, output))
                    {
                        return false;
                    }

                    break;
                default:
                    return Fail($"expected an object in the telemetry array at byte {_reader.TokenStartIndex}", _reader.TokenStartIndex);
            }
        }
    }

    /// <summary>
    /// One telemetry object, flat or timestamped. As in the reference, an object is the timestamped form
    /// exactly when it has both a "ts" and a "values" key (other keys beside them are ignored); otherwise
    /// every key, including a lone "ts" or "values", is a flat entry stamped <paramref name="nowTs"/>.
    /// The form is guessed from the first key and the reader is rewound in the rare case the guess is wrong.
    /// </summary>
    private bool ParseTelemetryObject(long nowTs, List<TsKvEntry> output)
    {
        int start = output.Count;
        Utf8JsonReader atObjectStart = _reader;

        if (FirstKeyIsTsOrValues(atObjectStart))
        {
            ObjectOutcome outcome = ParseTsObject(output, start);
            if (outcome == ObjectOutcome.Ok)
            {
                return true;
            }

            // A shape error inside "values" is only an error if this really is the timestamped form.
            if (outcome == ObjectOutcome.Failed && HasTsAndValues(atObjectStart))
            {
                return false;
            }

            Rewind(atObjectStart, output, start);
            return ParseFlatTelemetryObject(nowTs, output, detectTsForm: false) == ObjectOutcome.Ok;
        }

        ObjectOutcome flat = ParseFlatTelemetryObject(nowTs, output, detectTsForm: true);
        if (flat != ObjectOutcome.IsTsForm)
        {
            return flat == ObjectOutcome.Ok;
        }

        Rewind(atObjectStart, output, start);
        return ParseTsObject(output, start) == ObjectOutcome.Ok;
    }

    private void Rewind(Utf8JsonReader atObjectStart, List<TsKvEntry> output, int start)
    {
        output.RemoveRange(start, output.Count - start);
        _reader = atObjectStart;
        _error = default;
    }

    /// <summary>
    /// <see cref="Utf8JsonReader.ValueTextEquals(ReadOnlySpan{byte})"/> unescapes an escaped key and throws
    /// <see cref="InvalidOperationException"/> for an escaped lone surrogate (<c>"\ud800"</c>), which the reader's
    /// syntax check lets through (found by tests/Fuzz). Such a key is neither "ts" nor "values"; reading it as an
    /// entry key then rejects it in <see cref="TryReadKey"/>.
    /// </summary>
    private static bool KeyIs(ref Utf8JsonReader reader, ReadOnlySpan<byte> name)
    {
        if (!reader.ValueIsEscaped)
        {
            return reader.ValueTextEquals(name);
        }

        try
        {
            return reader.ValueTextEquals(name);
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static bool FirstKeyIsTsOrValues(Utf8JsonReader peek)
    {
        return peek.Read() && peek.TokenType == JsonTokenType.PropertyName &&
            (KeyIs(ref peek, "ts"u8) || KeyIs(ref peek, "values"u8));
    }

    /// <summary>Scans the object's own keys (skipping values) for both "ts" and "values".</summary>
    private static bool HasTsAndValues(Utf8JsonReader scan)
    {
        bool ts = false, values = false;
        while (scan.Read() && scan.TokenType == JsonTokenType.PropertyName)
        {
            ts |= KeyIs(ref scan, "ts"u8);
            values |= KeyIs(ref scan, "values"u8);
            scan.Read();
            scan.Skip();
        }

        return ts && values;
    }

    private ObjectOutcome ParseFlatTelemetryObject(long ts, List<TsKvEntry> output, bool detectTsForm)
    {
        bool sawTs = false, sawValues = false;
        while (true)
        {
            Next();
            if (_reader.TokenType == JsonTokenType.EndObject)
            {
                return ObjectOutcome.Ok;
            }

            if (detectTsForm)
            {
                sawTs |= KeyIs(ref _reader, "ts"u8);
                sawValues |= KeyIs(ref _reader, "values"u8);
                if (sawTs && sawValues)
                {
                    return ObjectOutcome.IsTsForm;
                }
            }

            if (!TryReadEntry(out KvEntry entry, out bool present))
            {
                return ObjectOutcome.Failed;
            }

            if (present)
            {
                output.Add(new TsKvEntry(ts, entry));
            }
        }
    }

    /// <summary>
    /// <c>{"ts":ms,"values":{...}}</c> in any key order. Entries are added as "values" is read and
    /// stamped once "ts" is known. Returns <see cref="ObjectOutcome.IsFlat"/> when a key is missing.
    /// </summary>
    private ObjectOutcome ParseTsObject(List<TsKvEntry> output, int start)
    {
        long ts = 0;
        bool sawTs = false, sawValues = false;
        long badTsAt = -1, badValuesAt = -1;
        while (true)
        {
            Next();
            if (_reader.TokenType == JsonTokenType.EndObject)
            {
                break;
            }

            if (KeyIs(ref _reader, "ts"u8))
            {
                // Duplicate keys: the last one wins, as with the reference's JSON object model.
                sawTs = true;
                Next();
                badTsAt = TryReadTs(out ts) ? -1 : _reader.TokenStartIndex;
                _reader.Skip();
            }
            else if (KeyIs(ref _reader, "values"u8))
            {
                sawValues = true;
                Next();
                output.RemoveRange(start, output.Count - start);
                if (_reader.TokenType != JsonTokenType.StartObject)
                {
                    badValuesAt = _reader.TokenStartIndex;
                    _reader.Skip();
                    continue;
                }

                badValuesAt = -1;
                if (ParseFlatTelemetryObject(0, output, detectTsForm: false) != ObjectOutcome.Ok)
                {
                    return ObjectOutcome.Failed;
                }
            }
            else
            {
                Next();
                _reader.Skip();
            }
        }

        if (!sawTs || !sawValues)
        {
            return ObjectOutcome.IsFlat;
        }

        if (badTsAt >= 0)
        {
            Fail($"expected an integer for 'ts' at byte {badTsAt}", badTsAt);
            return ObjectOutcome.Failed;
        }

        if (badValuesAt >= 0)
        {
            Fail($"expected an object for 'values' at byte {badValuesAt}", badValuesAt);
            return ObjectOutcome.Failed;
        }

        foreach (ref TsKvEntry entry in CollectionsMarshal.AsSpan(output)[start..])
        {
            entry = new TsKvEntry(ts, entry.Entry);
        }

        return ObjectOutcome.Ok;
    }

    private bool ParseAttributeObject(List<KvEntry> output)
    {
        while (true)
        {
            Next();
            if (_reader.TokenType == JsonTokenType.EndObject)
            {
                return true;
            }

            if (!TryReadEntry(out KvEntry entry, out bool present))
            {
                return false;
            }

            if (present)
            {
                output.Add(entry);
            }
        }
    }

    /// <summary>
    /// Reads one <c>"key": value</c> pair, the reader being on the property name. A JSON null value
    /// yields no entry (<paramref name="present"/> false): the reference has no null type, and a device
    /// sending null for a sensor it cannot read should not lose the rest of its message.
    /// </summary>
    private bool TryReadEntry(out KvEntry entry, out bool present)
    {
        entry = default;
        present = false;
        if (!TryReadKey(out KeyTable.Entry? keyEntry))
        {
            return false;
        }

        string key = keyEntry.Value;

        Next();
        switch (_reader.TokenType)
        {
            case JsonTokenType.True:
                entry = new KvEntry(key, true);
                break;
            case JsonTokenType.False:
                entry = new KvEntry(key, false);
                break;
            case JsonTokenType.Number:
                // An integer literal that fits is Long; the rest follows the reference's rule (ReadOtherNumber).
                if (TryGetInt64(out long integer))
                {
                    entry = new KvEntry(key, integer);
                }
                else if (!TryReadOtherNumber(key, out entry))
                {
                    return Fail($"number out of range for '{key}' at byte {_reader.TokenStartIndex}", _reader.TokenStartIndex);
                }

                break;
            case JsonTokenType.String:
                if (!TryGetString(keyEntry, out string? text))
                {
                    return false;
                }

                entry = new KvEntry(key, text);
                break;
            case JsonTokenType.StartObject:
            case JsonTokenType.StartArray:
                if (!TryReadRawJson(key, out string? json))
                {
                    return false;
                }

                entry = new KvEntry(key, json, isJson: true);
                break;
            case JsonTokenType.Null:
                return true;
            default:
                return Fail($"unexpected token for '{key}' at byte {_reader.TokenStartIndex}", _reader.TokenStartIndex);
        }

        present = true;
        return true;
    }

    /// <summary>The longest whole number kept as text (the reference keeps any; 1e1000 and beyond is refused).</summary>
    private const int MaxPlainIntegerDigits = 1000;

    /// <summary>
    /// A number that is not an integer fitting a long, typed as the reference types it (its JSON converter with type
    /// casts on, the default): an integer literal too large for a long is kept exactly, as a string; a literal with an
    /// exponent that is a whole number (<c>1e3</c>, <c>2.5E1</c>) is a long, or that string when it is too large; any
    /// other literal with a fraction or an exponent is a double (infinite: false). Allocates only the string of a
    /// whole number beyond a long.
    /// </summary>
    private readonly bool TryReadOtherNumber(string key, out KvEntry entry)
    {
        entry = default;
        long length = _reader.HasValueSequence ? _reader.ValueSequence.Length : _reader.ValueSpan.Length;
        byte[]? rented = null;
        Span<byte> literal = length <= StackNumberLimit ? stackalloc byte[StackNumberLimit] : (rented = ArrayPool<byte>.Shared.Rent((int)length));
        try
        {
            literal = literal[..CopyRawValue(literal)];

            var exponentAt = literal.IndexOfAny((byte)'e', (byte)'E');
            if (exponentAt < 0 && literal.IndexOf((byte)'.') < 0)
            {
                entry = new KvEntry(key, Encoding.ASCII.GetString(literal)); // an integer beyond a long
                return true;
            }

            if (exponentAt >= 0)
            {
                if (TryWholeNumber(literal, exponentAt, out var whole, out var beyondLong, out var tooLarge))
                {
                    entry = beyondLong is null ? new KvEntry(key, whole) : new KvEntry(key, beyondLong);
                    return true;
                }

                if (tooLarge)
                {
                    return false;
                }
            }

            if (TryGetDouble(out double real) && double.IsFinite(real))
            {
                entry = new KvEntry(key, real);
                return true;
            }

            return false; // Utf8JsonReader reads 1.5e400 as infinity; no stored value or JSON rendering can hold that.
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>
    /// Whether a literal with an exponent is a whole number: as <paramref name="whole"/> when it fits a long, else as its
    /// plain digits with its sign in <paramref name="beyondLong"/>; <paramref name="tooLarge"/> when it is whole but
    /// longer than <see cref="MaxPlainIntegerDigits"/>.
    /// </summary>
    private static bool TryWholeNumber(ReadOnlySpan<byte> literal, int exponentAt, out long whole, out string? beyondLong, out bool tooLarge)
    {
        whole = 0;
        beyondLong = null;
        tooLarge = false;
        var negative = literal[0] == (byte)'-';
        var mantissa = literal[(negative ? 1 : 0)..exponentAt];
        var exponentText = literal[(exponentAt + 1)..];
        var exponentNegative = !exponentText.IsEmpty && exponentText[0] == (byte)'-';
        long exponent = 0;
        foreach (var c in exponentText)
        {
            if (c is >= (byte)'0' and <= (byte)'9' && exponent < 1_000_000)
            {
                exponent = (exponent * 10) + (c - '0');
            }
        }

        exponent = exponentNegative ? -exponent : exponent;
        var pointAt = mantissa.IndexOf((byte)'.');
        var integerPart = pointAt < 0 ? mantissa : mantissa[..pointAt];
        var fraction = pointAt < 0 ? default : mantissa[(pointAt + 1)..];

        // The significant digits, and where the decimal point falls among them.
        Span<byte> digits = stackalloc byte[Math.Min(mantissa.Length, 128)];
        if (mantissa.Length > 128)
        {
            return false; // a mantissa that long is a measurement, not a whole number: read as a double
        }

        var count = 0;
        var point = integerPart.Length + exponent;
        foreach (var c in integerPart)
        {
            digits[count++] = c;
        }

        foreach (var c in fraction)
        {
            digits[count++] = c;
        }

        var first = 0;
        while (first < count && digits[first] == (byte)'0')
        {
            first++;
            point--;
        }

        var significant = digits[first..count];
        if (significant.IsEmpty)
        {
            return true; // zero
        }

        if (point < significant.Length && (point <= 0 || significant[(int)point..].ContainsAnyExcept((byte)'0')))
        {
            return false; // a fraction remains
        }

        if (point > MaxPlainIntegerDigits)
        {
            tooLarge = true;
            return false;
        }

        Span<char> text = stackalloc char[(negative ? 1 : 0) + (int)point];
        var at = 0;
        if (negative)
        {
            text[at++] = '-';
        }

        for (var i = 0; i < point; i++)
        {
            text[at++] = i < significant.Length ? (char)significant[i] : '0';
        }

        if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out whole))
        {
            beyondLong = new string(text);
        }

        return true;
    }

    /// <summary>
    /// A "ts" as the reference reads it (Gson's getAsLong): an integer; a number with a fraction or an exponent, cut
    /// to its whole milliseconds (firmware sends <c>Date.now()</c>-style and <c>time.time()*1000</c> values); or a
    /// string holding an integer. Nothing is allocated.
    /// </summary>
    private readonly bool TryReadTs(out long ts)
    {
        ts = 0;
        switch (_reader.TokenType)
        {
            case JsonTokenType.Number:
                if (TryGetInt64(out ts))
                {
                    return true;
                }

                // 2^63 is exact as a double; a value below it (and at least -2^63) fits a long.
                if (TryGetDouble(out double d) && d >= -9.223372036854775808E18 && d < 9.223372036854775808E18)
                {
                    ts = (long)d;
                    return true;
                }

                return false;
            case JsonTokenType.String:
                // The raw bytes, read as Long.parseLong reads text: an optional sign, then ASCII digits only (an
                // escaped string, or one that is not valid UTF-8, is no integer).
                long length = _reader.HasValueSequence ? _reader.ValueSequence.Length : _reader.ValueSpan.Length;
                if (length > StackNumberLimit || _reader.ValueIsEscaped)
                {
                    return false;
                }

                Span<byte> raw = stackalloc byte[StackNumberLimit];
                return long.TryParse(raw[..CopyRawValue(raw)], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out ts);
            default:
                return false;
        }
    }

    /// <summary>The current token's raw bytes (as in the input, escapes kept) copied into <paramref name="destination"/>; returns their count.</summary>
    private readonly int CopyRawValue(Span<byte> destination)
    {
        if (_reader.HasValueSequence)
        {
            _reader.ValueSequence.CopyTo(destination);
            return (int)_reader.ValueSequence.Length;
        }

        _reader.ValueSpan.CopyTo(destination);
        return _reader.ValueSpan.Length;
    }

    /// <summary>
    /// <see cref="Utf8JsonReader.TryGetInt64"/> copies a number split across segments to a new array;
    /// a number that fits (any long or typical double does) is joined on the stack and read by a reader
    /// over that copy instead, so the rules stay the reader's own.
    /// </summary>
    private readonly bool TryGetInt64(out long value)
    {
        if (!_reader.HasValueSequence || _reader.ValueSequence.Length > StackNumberLimit)
        {
            return _reader.TryGetInt64(out value);
        }

        Span<byte> scratch = stackalloc byte[StackNumberLimit];
        Utf8JsonReader number = JoinNumber(scratch);
        return number.TryGetInt64(out value);
    }

    /// <inheritdoc cref="TryGetInt64"/>
    private readonly bool TryGetDouble(out double value)
    {
        if (!_reader.HasValueSequence || _reader.ValueSequence.Length > StackNumberLimit)
        {
            return _reader.TryGetDouble(out value);
        }

        Span<byte> scratch = stackalloc byte[StackNumberLimit];
        Utf8JsonReader number = JoinNumber(scratch);
        return number.TryGetDouble(out value);
    }

    private readonly Utf8JsonReader JoinNumber(Span<byte> scratch)
    {
        ReadOnlySequence<byte> digits = _reader.ValueSequence;
        digits.CopyTo(scratch);
        var number = new Utf8JsonReader(scratch[..(int)digits.Length]);
        number.Read();
        return number;
    }

    private bool TryReadKey([NotNullWhen(true)] out KeyTable.Entry? key)
    {
        long at = _reader.TokenStartIndex;
        try
        {
            if (!_reader.HasValueSequence && !_reader.ValueIsEscaped)
            {
                ReadOnlySpan<byte> raw = _reader.ValueSpan;
                if (raw.IsEmpty)
                {
                    key = null;
                    return Fail($"empty key at byte {at}", at);
                }

                key = _keys.InternEntry(raw);
                return true;
            }

            // Escaped or split across segments: unescape / join into scratch, then intern the bytes.
            int maxLength = _reader.HasValueSequence ? checked((int)_reader.ValueSequence.Length) : _reader.ValueSpan.Length;
            byte[]? rented = null;
            Span<byte> scratch = maxLength <= StackKeyLimit
                ? stackalloc byte[StackKeyLimit]
                : (rented = ArrayPool<byte>.Shared.Rent(maxLength));
            try
            {
                int length = _reader.CopyString(scratch);
                if (length == 0)
                {
                    key = null;
                    return Fail($"empty key at byte {at}", at);
                }

                key = _keys.InternEntry(scratch[..length]);
                return true;
            }
            finally
            {
                if (rented is not null)
                {
                    ArrayPool<byte>.Shared.Return(rented);
                }
            }
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
        {
            // KeyTable rejects invalid UTF-8 (ArgumentException); the reader rejects bad escapes (InvalidOperationException).
            key = null;
            return Fail($"invalid UTF-8 in key at byte {at}", at);
        }
    }

    /// <summary>
    /// A string value. A short one (at most <see cref="KeyTable.MaxReusedValueLength"/> bytes as sent, so at most
    /// that many characters) is unescaped and decoded on the stack and compared with the key's last value:
    /// when equal, that instance is returned and nothing is allocated (devices repeat "ON", firmware
    /// versions, status words); otherwise the new string becomes the key's last value.
    /// </summary>
    private bool TryGetString(KeyTable.Entry key, [NotNullWhen(true)] out string? text)
    {
        try
        {
            long rawLength = _reader.HasValueSequence ? _reader.ValueSequence.Length : _reader.ValueSpan.Length;
            if (rawLength > KeyTable.MaxReusedValueLength)
            {
                text = _reader.GetString()!;
                return true;
            }

            // The unescaped, UTF-16 form is never longer than the escaped UTF-8 bytes, so the buffer fits.
            Span<char> chars = stackalloc char[KeyTable.MaxReusedValueLength];
            ReadOnlySpan<char> value = chars[.._reader.CopyString(chars)];
            string? last = Volatile.Read(ref key.LastValue);
            if (last is not null && value.SequenceEqual(last))
            {
                text = last;
                return true;
            }

            text = value.Length == 0 ? string.Empty : new string(value);
            Volatile.Write(ref key.LastValue, text);
            return true;
        }
        catch (InvalidOperationException)
        {
            text = null;
            return Fail($"invalid UTF-8 in the value of '{key.Value}' at byte {_reader.TokenStartIndex}", _reader.TokenStartIndex);
        }
    }

    /// <summary>A nested object or array value: its exact bytes, as the reference keeps JSON values verbatim.</summary>
    private bool TryReadRawJson(string key, [NotNullWhen(true)] out string? json)
    {
        long start = _reader.TokenStartIndex;
        _reader.Skip();
        long length = _reader.BytesConsumed - start;
        try
        {
            json = _isSequence
                ? StrictUtf8.GetString(_sequence.Slice(start, length))
                : StrictUtf8.GetString(_span.Slice((int)start, (int)length));
            return true;
        }
        catch (ArgumentException)
        {
            json = null;
            return Fail($"invalid UTF-8 in the value of '{key}' at byte {start}", start);
        }
    }

    private bool Fail(string message, long bytePosition)
    {
        _error = new JsonParseError(message, bytePosition);
        return false;
    }

    private void FailSyntax(JsonException ex)
    {
        long position = AbsolutePosition(ex);
        string reason = ex.Message;
        int suffix = reason.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (suffix > 0)
        {
            reason = reason[..suffix];
        }

        _error = new JsonParseError($"malformed JSON at byte {position}: {reason}", position);
    }

    /// <summary>The reader reports line and byte-in-line; turn that into an offset into the payload.</summary>
    private readonly long AbsolutePosition(JsonException ex)
    {
        if (ex.LineNumber is not long line || ex.BytePositionInLine is not long inLine)
        {
            return _reader.BytesConsumed;
        }

        if (line == 0)
        {
            return inLine;
        }

        // Utf8JsonReader counts lines by '\n' only. Error path: a linear scan is fine.
        long offset = 0;
        long lines = 0;
        if (_isSequence)
        {
            foreach (ReadOnlyMemory<byte> segment in _sequence)
            {
                if (LineStart(segment.Span, ref offset, ref lines, line))
                {
                    return offset + inLine;
                }
            }
        }
        else if (LineStart(_span, ref offset, ref lines, line))
        {
            return offset + inLine;
        }

        return _reader.BytesConsumed;
    }

    private static bool LineStart(ReadOnlySpan<byte> chunk, ref long offset, ref long lines, long wanted)
    {
        for (int i = 0; i < chunk.Length; i++)
        {
            if (chunk[i] == (byte)'\n' && ++lines == wanted)
            {
                offset += i + 1;
                return true;
            }
        }

        offset += chunk.Length;
        return false;
    }
}
