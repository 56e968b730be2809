namespace Perf.Core.Telemetry;

/// <summary>The value types of the reference platform's key/value model.</summary>
public enum DataType : byte
{
    Boolean = 1,
    Long = 2,
    Double = 3,
    String = 4,
    Json = 5,
}

/// <summary>
/// One typed key/value. Numbers and booleans live inline (no boxing); strings and JSON
/// (a raw JSON object or array text) live in <see cref="Text"/>. Keys are interned through
/// <see cref="KeyTable"/> so the same key name is one string instance for the whole process.
/// </summary>
public readonly struct KvEntry : IEquatable<KvEntry>
{
    private readonly long _bits;

    public KvEntry(string key, bool value) { Key = key; Type = DataType.Boolean; _bits = value ? 1 : 0; Text = null; }
    public KvEntry(string key, long value) { Key = key; Type = DataType.Long; _bits = value; Text = null; }
    public KvEntry(string key, double value) { Key = key; Type = DataType.Double; _bits = BitConverter.DoubleToInt64Bits(value); Text = null; }
    public KvEntry(string key, string value, bool isJson = false) { Key = key; Type = isJson ? DataType.Json : DataType.String; _bits = 0; Text = value; }

    public string Key { get; }
    public DataType Type { get; }
    public string? Text { get; }

    public bool BooleanValue => _bits != 0;
    public long LongValue => _bits;
    public double DoubleValue => BitConverter.Int64BitsToDouble(_bits);

    /// <summary>Numeric view for aggregation: long and double as double, bool as 0/1, others NaN.</summary>
    public double AsDouble() => Type switch
    {
        DataType.Long => _bits,
        DataType.Double => DoubleValue,
        DataType.Boolean => _bits,
        _ => double.NaN,
    };

    /// <summary>The value as the reference renders it when strict data types are off.</summary>
    public string ValueAsString() => Type switch
    {
        DataType.Boolean => BooleanValue ? "true" : "false",
        DataType.Long => LongValue.ToString(System.Globalization.CultureInfo.InvariantCulture),
        DataType.Double => JavaNumbers.Format(DoubleValue),
        _ => Text ?? string.Empty,
    };

    public bool Equals(KvEntry other) =>
        Type == other.Type && _bits == other._bits && string.Equals(Key, other.Key, StringComparison.Ordinal) &&
        string.Equals(Text, other.Text, StringComparison.Ordinal);

    public override bool Equals(object? obj) => obj is KvEntry other && Equals(other);
    public override int GetHashCode() => HashCode.Combine(Key, Type, _bits, Text);
    public static bool operator ==(KvEntry left, KvEntry right) => left.Equals(right);
    public static bool operator !=(KvEntry left, KvEntry right) => !left.Equals(right);
    public override string ToString() => $"{Key}={ValueAsString()} ({Type})";
}

/// <summary>A key/value with its timestamp (Unix milliseconds).</summary>
public readonly record struct TsKvEntry(long Ts, KvEntry Entry);
