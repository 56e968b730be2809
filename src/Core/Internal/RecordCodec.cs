using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Perf.Core.Telemetry;

namespace Perf.Core.Internal;

/// <summary>Kinds of log records. Values are persisted: append only, never renumber.</summary>
internal enum RecordKind : byte
{
    Tenant = 1,
    Customer = 2,
    User = 3,
    Device = 4,
    DeviceDelete = 5,
    Credentials = 6,
    Edge = 7,
    EdgeDelete = 8,
    OtaPackage = 9,
    Attributes = 10,
    AttributesDelete = 11,
    Telemetry = 12,
    TelemetryDelete = 13,

    /// <summary>A device's X.509 certificate credentials (replace its access token). Refers to a device, so it loads after them.</summary>
    X509Credentials = 14,

    /// <summary>
    /// Checkpoint only: a chunk of one series' history (device, key once, then the points: the first ts whole, each
    /// later one as a varint delta, each followed by its value). The log's <see cref="Telemetry"/> record repeats the
    /// ts and the key per point, which made the history snapshot the costly part of a checkpoint.
    /// </summary>
    TelemetryHistory = 15,

    /// <summary>A device's MQTT basic credentials (replace its access token or certificate); the value is their JSON. Loads after the devices.</summary>
    MqttBasicCredentials = 16,

    /// <summary>
    /// A device's telemetry payload as it arrived: device, the receipt time (the ts of entries without one), then the
    /// JSON bytes to the record's end. It is parsed while its commit is on the disk (<see cref="PendingRecord.Prepare"/>)
    /// and again on replay, with the same time, into the same entries; a payload that does not parse is answered
    /// <see cref="UplinkStatus.BadPayload"/> and skipped by replay. The door's hot path copies bytes instead of parsing
    /// and encoding them before its round's commit (issue 12, row 5).
    /// </summary>
    TelemetryJson = 17,

    // Entity deletes (20..29).
    TenantDelete = 20,
    CustomerDelete = 21,
    UserDelete = 22,

    // Persistent RPC (40..49 reserved for RPC so parallel branches adding kinds do not collide).
    Rpc = 40,
    RpcTransition = 41,
    RpcRemove = 42,
    RpcSequence = 43,

    // Edge queues (50..59 reserved for edges so parallel branches adding kinds do not collide).
    EdgeAssignment = 50,
    EdgeDownlink = 51,
    EdgeDownlinkDone = 52,
    EdgeMeta = 53,
    EdgeQueueDelete = 54,

    /// <summary>Checkpoint only: one edge's whole queue state, its sub-records in replay order.</summary>
    EdgeState = 55,
}

/// <summary>Flags of a telemetry record: which stores the entries go to.</summary>
[Flags]
internal enum TelemetryTarget : byte
{
    History = 1,
    Latest = 2,
    Both = History | Latest,
}

/// <summary>
/// Little-endian writer into a pooled, growing buffer. Strings are a 7-bit-encoded byte length then
/// UTF-8; null strings are length 0 preceded by a presence byte where nullable. The buffer is handed to
/// the log with <see cref="Detach"/> and returned to the pool by the log after it was enqueued.
/// </summary>
internal struct RecordWriter
{
    private byte[] _buffer;
    private int _position;

    public RecordWriter(RecordKind kind, int sizeHint = 256)
    {
        _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(sizeHint, 64));
        _position = 0;
        WriteByte((byte)kind);
    }

    /// <summary>Writes into <paramref name="buffer"/> (a pooled record's own, 64 B or more); growth rents from the shared pool.</summary>
    public RecordWriter(RecordKind kind, byte[] buffer)
    {
        _buffer = buffer;
        _position = 0;
        WriteByte((byte)kind);
    }

    public readonly int Length => _position;

    private Span<byte> Reserve(int count)
    {
        if (_position + count > _buffer.Length)
        {
            var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _position + count));
            _buffer.AsSpan(0, _position).CopyTo(bigger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = bigger;
        }
        var span = _buffer.AsSpan(_position, count);
        _position += count;
        return span;
    }

    public void WriteByte(byte value) => Reserve(1)[0] = value;

    public void WriteBool(bool value) => WriteByte(value ? (byte)1 : (byte)0);

    public void WriteInt64(long value) => BinaryPrimitives.WriteInt64LittleEndian(Reserve(8), value);

    public void WriteGuid(Guid value) => value.TryWriteBytes(Reserve(16));

    public void WriteVarUInt(uint value) => WriteVarUInt64(value);

    public void WriteVarUInt64(ulong value)
    {
        while (value >= 0x80)
        {
            WriteByte((byte)(value | 0x80));
            value >>= 7;
        }
        WriteByte((byte)value);
    }

    public void WriteString(string value)
    {
        var max = Encoding.UTF8.GetMaxByteCount(value.Length);
        if (max < 128)
        {
            Span<byte> scratch = stackalloc byte[128];
            var n = Encoding.UTF8.GetBytes(value, scratch);
            WriteVarUInt((uint)n);
            scratch[..n].CopyTo(Reserve(n));
            return;
        }
        var count = Encoding.UTF8.GetByteCount(value);
        WriteVarUInt((uint)count);
        Encoding.UTF8.GetBytes(value, Reserve(count));
    }

    public void WriteNullableString(string? value)
    {
        WriteBool(value is not null);
        if (value is not null)
        {
            WriteString(value);
        }
    }

    public void WriteBytes(ReadOnlySpan<byte> value)
    {
        WriteVarUInt((uint)value.Length);
        value.CopyTo(Reserve(value.Length));
    }

    /// <summary>Bytes to the record's end, without a length (a <see cref="RecordKind.TelemetryJson"/> payload).</summary>
    public void WriteTail(in ReadOnlySequence<byte> value)
    {
        foreach (var segment in value)
        {
            WriteRaw(segment.Span);
        }
    }

    /// <summary>Bytes already in record encoding (a stored telemetry value: type byte and value, as <see cref="WriteKv"/> writes them after the key).</summary>
    public void WriteRaw(ReadOnlySpan<byte> encoded) => encoded.CopyTo(Reserve(encoded.Length));

    public void WriteKv(in KvEntry kv)
    {
        WriteString(kv.Key);
        WriteKvValue(kv);
    }

    /// <summary>The type and value of <paramref name="kv"/>, without its key.</summary>
    public void WriteKvValue(in KvEntry kv)
    {
        WriteByte((byte)kv.Type);
        switch (kv.Type)
        {
            case DataType.Boolean:
                WriteBool(kv.BooleanValue);
                break;
            case DataType.Long:
                WriteInt64(kv.LongValue);
                break;
            case DataType.Double:
                WriteInt64(BitConverter.DoubleToInt64Bits(kv.DoubleValue));
                break;
            default:
                WriteString(kv.Text ?? string.Empty);
                break;
        }
    }

    /// <summary>Hands over the pooled buffer; the receiver returns it to <see cref="ArrayPool{T}.Shared"/>.</summary>
    public byte[] Detach(out int length)
    {
        length = _position;
        var buffer = _buffer;
        _buffer = [];
        _position = 0;
        return buffer;
    }
}

/// <summary>Reader over one record; throws <see cref="InvalidDataException"/> on a truncated record.</summary>
internal ref struct RecordReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _position;
    private readonly KeyTable _keys;

    public RecordReader(ReadOnlySpan<byte> data, KeyTable keys)
    {
        _data = data;
        _position = 0;
        _keys = keys;
    }

    /// <summary>The key table this reader interns keys into (for readers of nested records).</summary>
    public readonly KeyTable Keys => _keys;

    public readonly bool End => _position >= _data.Length;

    private ReadOnlySpan<byte> Take(int count)
    {
        if ((uint)count > (uint)(_data.Length - _position))
        {
            throw new InvalidDataException("Truncated log record.");
        }
        var span = _data.Slice(_position, count);
        _position += count;
        return span;
    }

    public byte ReadByte() => Take(1)[0];

    /// <summary>The rest of the record (what <see cref="RecordWriter.WriteTail"/> wrote).</summary>
    public ReadOnlySpan<byte> ReadTail() => Take(_data.Length - _position);

    public bool ReadBool() => ReadByte() != 0;

    public long ReadInt64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public Guid ReadGuid() => new(Take(16));

    public uint ReadVarUInt() =>
        ReadVarUInt64() is var value && value <= uint.MaxValue ? (uint)value : throw new InvalidDataException("Bad varint in log record.");

    /// <summary>
    /// A count of items that follow in the record. Every item takes at least one byte, so a count beyond the bytes
    /// left is refused here, before a caller sizes an array by it.
    /// </summary>
    public int ReadCount() =>
        ReadVarUInt64() is var count && count <= (ulong)(_data.Length - _position) ? (int)count : throw new InvalidDataException("Bad count in log record.");

    public ulong ReadVarUInt64()
    {
        ulong result = 0;
        for (var shift = 0; shift < 70; shift += 7)
        {
            var b = ReadByte();
            if (shift == 63 && b > 1)
            {
                // The tenth byte holds the 64th bit only: anything more does not fit.
                break;
            }
            result |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return result;
            }
        }
        throw new InvalidDataException("Bad varint in log record.");
    }

    public string ReadString() => Encoding.UTF8.GetString(Take((int)ReadVarUInt()));

    public string ReadKey() => _keys.Intern(Take((int)ReadVarUInt()));

    public string? ReadNullableString() => ReadBool() ? ReadString() : null;

    public byte[] ReadBytes() => Take((int)ReadVarUInt()).ToArray();

    public KvEntry ReadKv() => ReadKvValue(ReadKey());

    /// <summary>A type and value written by <see cref="RecordWriter.WriteKvValue"/>, as an entry of <paramref name="key"/>.</summary>
    public KvEntry ReadKvValue(string key)
    {
        var type = (DataType)ReadByte();
        return type switch
        {
            DataType.Boolean => new KvEntry(key, ReadBool()),
            DataType.Long => new KvEntry(key, ReadInt64()),
            DataType.Double => new KvEntry(key, BitConverter.Int64BitsToDouble(ReadInt64())),
            DataType.String => new KvEntry(key, ReadString()),
            DataType.Json => new KvEntry(key, ReadString(), isJson: true),
            _ => throw new InvalidDataException($"Unknown data type {(byte)type} in log record."),
        };
    }
}
