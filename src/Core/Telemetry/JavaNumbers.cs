using System.Globalization;

namespace Perf.Core.Telemetry;

/// <summary>
/// Numbers as the reference platform (Java) renders and reads them, so values read back over REST, pushed to devices
/// or sent to dashboards look the same as there: a double always shows a fraction or an exponent (<c>42.0</c>,
/// <c>1.0E-7</c>, <c>1.2345678901234567E19</c>, Java's <c>Double.toString</c>), never <c>42</c> or <c>1E-07</c>.
/// Nothing is allocated but the string of <see cref="Format(double)"/>.
/// </summary>
public static class JavaNumbers
{
    /// <summary>Room for any double in Java's form: sign, 17 digits, point, "E", sign and 3 digits.</summary>
    public const int MaxDoubleLength = 32;

    public static string Format(double value)
    {
        Span<byte> utf8 = stackalloc byte[MaxDoubleLength];
        var written = Format(value, utf8);
        return System.Text.Encoding.ASCII.GetString(utf8[..written]);
    }

    /// <summary>
    /// Writes <paramref name="value"/> as Java's <c>Double.toString</c> does (the shortest digits that read back to the
    /// same double): plain with at least one fraction digit for 10^-3 &lt;= |value| &lt; 10^7, else
    /// <c>d.dddE[-]n</c>. Infinity and NaN as Java spells them. Returns the bytes written.
    /// </summary>
    public static int Format(double value, Span<byte> destination)
    {
        if (double.IsNaN(value))
        {
            return Copy("NaN"u8, destination);
        }

        if (double.IsInfinity(value))
        {
            return Copy(value > 0 ? "Infinity"u8 : "-Infinity"u8, destination);
        }

        var pos = 0;
        if (value < 0 || (value == 0 && double.IsNegative(value)))
        {
            destination[pos++] = (byte)'-';
            value = -value;
        }

        if (value == 0)
        {
            return pos + Copy("0.0"u8, destination[pos..]);
        }

        // The shortest round-trip digits, then laid out the Java way.
        Span<byte> r = stackalloc byte[MaxDoubleLength];
        value.TryFormat(r, out var length, "R", CultureInfo.InvariantCulture);
        Span<byte> digits = stackalloc byte[MaxDoubleLength];
        var count = 0;
        var pointAt = -1;
        var exponent = 0;
        for (var i = 0; i < length; i++)
        {
            var c = r[i];
            if (c == (byte)'.')
            {
                pointAt = count;
            }
            else if (c is (byte)'E' or (byte)'e')
            {
                exponent = ReadExponent(r[(i + 1)..length]);
                break;
            }
            else
            {
                digits[count++] = c;
            }
        }

        // decimal exponent of the first significant digit
        var integerDigits = (pointAt < 0 ? count : pointAt) + exponent;
        var start = 0;
        while (start < count - 1 && digits[start] == (byte)'0')
        {
            start++;
            integerDigits--;
        }

        var end = count;
        while (end > start + 1 && digits[end - 1] == (byte)'0')
        {
            end--;
        }

        var significant = digits[start..end];
        if (value >= 1e-3 && value < 1e7)
        {
            if (integerDigits <= 0)
            {
                destination[pos++] = (byte)'0';
                destination[pos++] = (byte)'.';
                for (var i = integerDigits; i < 0; i++)
                {
                    destination[pos++] = (byte)'0';
                }

                significant.CopyTo(destination[pos..]);
                return pos + significant.Length;
            }

            for (var i = 0; i < integerDigits; i++)
            {
                destination[pos++] = i < significant.Length ? significant[i] : (byte)'0';
            }

            destination[pos++] = (byte)'.';
            if (integerDigits >= significant.Length)
            {
                destination[pos++] = (byte)'0';
                return pos;
            }

            significant[integerDigits..].CopyTo(destination[pos..]);
            return pos + significant.Length - integerDigits;
        }

        destination[pos++] = significant[0];
        destination[pos++] = (byte)'.';
        if (significant.Length == 1)
        {
            destination[pos++] = (byte)'0';
        }
        else
        {
            significant[1..].CopyTo(destination[pos..]);
            pos += significant.Length - 1;
        }

        destination[pos++] = (byte)'E';
        (integerDigits - 1).TryFormat(destination[pos..], out var expLength, default, CultureInfo.InvariantCulture);
        return pos + expLength;
    }

    /// <summary>"+19", "-07" or "5" as an int.</summary>
    private static int ReadExponent(ReadOnlySpan<byte> text)
    {
        var negative = !text.IsEmpty && text[0] == (byte)'-';
        var value = 0;
        foreach (var c in text)
        {
            if (c is >= (byte)'0' and <= (byte)'9')
            {
                value = (value * 10) + (c - '0');
            }
        }

        return negative ? -value : value;
    }

    /// <summary>
    /// A JSON value as a whole number the way the reference reads one (Gson's getAsLong, Jackson's asLong): an integer;
    /// a number with a fraction or an exponent, cut to its whole part; or a string holding an integer. False for any
    /// other value or one outside a long.
    /// </summary>
    public static bool TryReadLong(System.Text.Json.JsonElement value, out long result)
    {
        result = 0;
        switch (value.ValueKind)
        {
            case System.Text.Json.JsonValueKind.Number when value.TryGetInt64(out result):
                return true;
            case System.Text.Json.JsonValueKind.Number:
                // 2^63 is exact as a double; a value below it (and at least -2^63) fits a long.
                if (value.TryGetDouble(out var d) && d >= -9.223372036854775808E18 && d < 9.223372036854775808E18)
                {
                    result = (long)d;
                    return true;
                }

                return false;
            case System.Text.Json.JsonValueKind.String:
                return long.TryParse(value.GetString(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out result);
            default:
                return false;
        }
    }

    /// <summary>Writes a JSON property holding <paramref name="value"/> in Java's form (a non-finite one, which JSON cannot hold, as a string).</summary>
    public static void WriteNumber(System.Text.Json.Utf8JsonWriter writer, string propertyName, double value)
    {
        Span<byte> utf8 = stackalloc byte[MaxDoubleLength];
        var written = Format(value, utf8);
        if (!double.IsFinite(value))
        {
            writer.WriteString(propertyName, utf8[..written]);
            return;
        }

        writer.WritePropertyName(propertyName);
        writer.WriteRawValue(utf8[..written], skipInputValidation: true);
    }

    private static int Copy(ReadOnlySpan<byte> text, Span<byte> destination)
    {
        text.CopyTo(destination);
        return text.Length;
    }
}
