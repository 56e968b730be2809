using System.Buffers;
using Perf.Core.Telemetry.Internal;

namespace Perf.Core.Telemetry;

/// <summary>
/// Parses device telemetry and attribute payloads (the reference platform's key-value JSON) into typed
/// entries, straight from the received bytes.
/// </summary>
/// <remarks>
/// <para>Telemetry forms: <c>{"k":v,...}</c>, <c>[{"k":v},...]</c>, <c>{"ts":ms,"values":{...}}</c> and an
/// array of any mix of the flat and timestamped objects. Entries without a timestamp get <c>nowTs</c>.
/// An object is the timestamped form when it has both "ts" and "values" (other keys beside them are
/// ignored, as in the reference); then "ts" must be an integer and "values" an object.</para>
/// <para>Value types: <c>true</c>/<c>false</c> → Boolean; an integer literal that fits in a long → Long;
/// a number with a fraction or exponent, or an integer too large for a long → Double; a string → String
/// (never converted, "25" stays a string); a nested object or array → Json holding its exact bytes as
/// text. A <c>null</c> value is skipped: it produces no entry and is not an error.</para>
/// <para>Rejected (false plus a <see cref="JsonParseError"/> whose position is a 0-based byte offset):
/// malformed JSON (truncated, trailing commas, comments, trailing data), a top level that is not an
/// object (attributes) or an object or array (telemetry), a non-object element of a telemetry array,
/// an empty key, nesting deeper than 64, numbers beyond the double range, invalid UTF-8.</para>
/// <para>Entries are appended to the caller's list, which the caller clears and reuses; after a failure
/// it may hold a partial result to discard. Numbers, booleans and keys already in the
/// <see cref="KeyTable"/> are parsed without allocating; so is a string value of at most 64 bytes equal to
/// the last one parsed for its key (the key's remembered instance is returned: devices repeat status words and
/// versions). Other string values and every JSON value allocate their string.</para>
/// </remarks>
public static class TelemetryJsonParser
{
    /// <inheritdoc cref="TryParseTelemetry(ReadOnlySpan{byte}, long, KeyTable, List{TsKvEntry}, out JsonParseError)"/>
    public static bool TryParseTelemetry(ReadOnlySequence<byte> json, long nowTs, KeyTable keys, List<TsKvEntry> output, out JsonParseError error)
    {
        if (json.IsSingleSegment)
        {
            return TryParseTelemetry(json.FirstSpan, nowTs, keys, output, out error);
        }

        var reader = new KvJsonReader(json, keys);
        return reader.ParseTelemetry(nowTs, output, out error);
    }

    /// <summary>Appends the entries of a telemetry payload in any of the four forms to <paramref name="output"/>.</summary>
    /// <returns>False, with <paramref name="error"/> saying what and where, when the payload is rejected.</returns>
    public static bool TryParseTelemetry(ReadOnlySpan<byte> json, long nowTs, KeyTable keys, List<TsKvEntry> output, out JsonParseError error)
    {
        var reader = new KvJsonReader(json, keys);
        return reader.ParseTelemetry(nowTs, output, out error);
    }

    /// <inheritdoc cref="TryParseAttributes(ReadOnlySpan{byte}, KeyTable, List{KvEntry}, out JsonParseError)"/>
    public static bool TryParseAttributes(ReadOnlySequence<byte> json, KeyTable keys, List<KvEntry> output, out JsonParseError error)
    {
        if (json.IsSingleSegment)
        {
            return TryParseAttributes(json.FirstSpan, keys, output, out error);
        }

        var reader = new KvJsonReader(json, keys);
        return reader.ParseAttributes(output, out error);
    }

    /// <summary>Appends the entries of a flat attribute object <c>{"k":v,...}</c> to <paramref name="output"/>.</summary>
    /// <returns>False, with <paramref name="error"/> saying what and where, when the payload is rejected.</returns>
    public static bool TryParseAttributes(ReadOnlySpan<byte> json, KeyTable keys, List<KvEntry> output, out JsonParseError error)
    {
        var reader = new KvJsonReader(json, keys);
        return reader.ParseAttributes(output, out error);
    }
}
