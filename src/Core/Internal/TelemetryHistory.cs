using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Perf.Core.Telemetry;

namespace Perf.Core.Internal;

/// <summary>
/// One (device, key) series' history off the GC heap: ts-sorted points (one per ts) packed into blocks of
/// native memory. A point is a varint ts delta from the previous point of its block (0 for a block's
/// first point, whose ts is the block's <see cref="HistoryBlock.FirstTs"/>), a <see cref="DataType"/> byte and
/// the value: 1 byte for a bool, 8 for a long or a double, a varint length and the UTF-8 bytes for a string or
/// JSON. The key is the series' and is not stored per point.
/// </summary>
/// <remarks>
/// <para>Appending in ts order (the device's normal case) writes into the last block and allocates nothing
/// but a new block every <see cref="BlockSize"/> bytes. A write at the last point's ts (a device sending
/// faster than the millisecond clock) rewrites that point in place. Any other write (an older ts, the
/// reference's "later write wins" at an earlier ts), a range delete or a trim rebuilds only the blocks it
/// touches. A point larger than a block gets a block of its own size.</para>
/// <para>Not thread-safe: the owner (TelemetryService's Series) serializes every call under its lock, so a
/// block is never freed while a reader walks it. Each block is a <see cref="SafeHandle"/>: a history that is
/// dropped without <see cref="Dispose"/> still frees its memory on finalization, and the GC is told of the
/// native bytes (memory pressure) so it finalizes in time.</para>
/// </remarks>
internal sealed class TelemetryHistory : IDisposable
{
    /// <summary>Block size: 16 KB holds ~1,500 numeric points or ~700 short strings.</summary>
    public const int BlockSize = 16 * 1024;

    private const int MaxVarIntBytes = 10;

    private static long s_liveNativeBytes;

    private readonly List<HistoryBlock> _blocks = [];
    private int _count;

    /// <summary>Native bytes held by every history block of the process (freed or finalized blocks excluded).</summary>
    public static long LiveNativeBytes => Interlocked.Read(ref s_liveNativeBytes);

    /// <summary>Number of points held.</summary>
    public int Count => _count;

    /// <summary>Number of native blocks (for tests and diagnostics).</summary>
    public int BlockCount => _blocks.Count;

    /// <summary>Native bytes held by the blocks (capacity, not only what is used).</summary>
    public long NativeBytes
    {
        get
        {
            long sum = 0;
            foreach (var block in _blocks)
            {
                sum += block.Capacity;
            }
            return sum;
        }
    }

    /// <summary>Stores the point; a point already at <paramref name="ts"/> is replaced.</summary>
    public void Put(long ts, in KvEntry value)
    {
        var payloadSize = PayloadSize(value);
        var count = _blocks.Count;
        if (count == 0 || ts > _blocks[count - 1].LastTs)
        {
            Append(ts, value, payloadSize);
            return;
        }

        var last = _blocks[count - 1];
        if (ts == last.LastTs && last.TryRewriteLast(value, payloadSize))
        {
            return;
        }

        var index = FindFirstBlockEndingAtOrAfter(ts);
        var block = _blocks[index];
        if (ts < block.FirstTs && index > 0 && _blocks[index - 1].TryAppend(ts, value, payloadSize))
        {
            // In the gap after the previous block, which has room: still an append there.
            _count++;
            return;
        }
        if (block.TryReplaceInPlace(ts, value, payloadSize))
        {
            return;
        }
        Rebuild(index, ts, value, payloadSize);
    }

    /// <summary>The newest point, if any.</summary>
    public bool TryGetLast(string key, out TsKvEntry last)
    {
        last = default;
        for (var i = _blocks.Count - 1; i >= 0; i--)
        {
            var cursor = new PointCursor(_blocks[i]);
            var found = false;
            while (cursor.Next())
            {
                last = new TsKvEntry(cursor.Ts, Decode(key, cursor.Payload));
                found = true;
            }
            if (found)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>
    /// The points in [<paramref name="startTs"/>, <paramref name="endTs"/>), ascending; an end of
    /// <see cref="long.MaxValue"/> includes a point at <see cref="long.MaxValue"/>.
    /// </summary>
    public TsKvEntry[] Range(long startTs, long endTs, string key)
    {
        var endInclusive = endTs == long.MaxValue;
        List<TsKvEntry>? result = null;
        for (var i = FindFirstBlockEndingAtOrAfter(startTs); i < _blocks.Count; i++)
        {
            var block = _blocks[i];
            if (!BeforeEnd(block.FirstTs, endTs, endInclusive))
            {
                break;
            }
            var cursor = new PointCursor(block);
            while (cursor.Next())
            {
                if (cursor.Ts < startTs)
                {
                    continue;
                }
                if (!BeforeEnd(cursor.Ts, endTs, endInclusive))
                {
                    break;
                }
                (result ??= []).Add(new TsKvEntry(cursor.Ts, Decode(key, cursor.Payload)));
            }
        }
        return result is null ? [] : result.ToArray();
    }

    /// <summary>
    /// Writes up to <paramref name="max"/> points from <paramref name="position"/> on as the points of a
    /// <see cref="RecordKind.TelemetryHistory"/> chunk: the first point's ts whole (8 bytes), each later one as a
    /// varint delta from the point before, each followed by its stored value (<see cref="RecordWriter.WriteKvValue"/>'s
    /// type and value: a stored value is already in that encoding, so it is copied, not decoded). Advances the position
    /// and returns how many were written. The history must not change between calls that share a position.
    /// </summary>
    public int WriteEntries(ref RecordWriter writer, ref SnapshotPosition position, int max)
    {
        var written = 0;
        var previousTs = 0L;
        while (written < max && position.Block < _blocks.Count)
        {
            var block = _blocks[position.Block];
            var data = block.Data;
            if (position.Offset == 0)
            {
                position.Ts = block.FirstTs;
            }
            while (written < max && position.Offset < data.Length)
            {
                var delta = ReadVarInt(data[position.Offset..], out var read);
                position.Offset += read;
                position.Ts = unchecked(position.Ts + (long)delta);
                var length = PayloadLength(data[position.Offset..]);
                if (written == 0)
                {
                    writer.WriteInt64(position.Ts);
                }
                else
                {
                    // Points are in ts order, one per ts: the delta is positive.
                    writer.WriteVarUInt64(unchecked((ulong)(position.Ts - previousTs)));
                }
                previousTs = position.Ts;
                writer.WriteRaw(data.Slice(position.Offset, length));
                position.Offset += length;
                written++;
            }
            if (position.Offset >= data.Length)
            {
                position.Block++;
                position.Offset = 0;
            }
        }
        return written;
    }

    /// <summary>The number of points older than <paramref name="ts"/> (the index of the first point at or after it).</summary>
    public int CountBefore(long ts)
    {
        var index = FindFirstBlockEndingAtOrAfter(ts);
        var count = 0;
        for (var i = 0; i < index; i++)
        {
            count += _blocks[i].Count;
        }
        if (index < _blocks.Count)
        {
            var cursor = new PointCursor(_blocks[index]);
            while (cursor.Next() && cursor.Ts < ts)
            {
                count++;
            }
        }
        return count;
    }

    /// <summary>
    /// The <see cref="WriteEntries"/> position of the point at <paramref name="index"/> (0-based, in ts order), so a
    /// snapshot can start at a chunk boundary; at or past <see cref="Count"/>, the end.
    /// </summary>
    public SnapshotPosition PositionAt(int index)
    {
        var position = default(SnapshotPosition);
        for (position.Block = 0; position.Block < _blocks.Count; position.Block++)
        {
            var block = _blocks[position.Block];
            if (index >= block.Count)
            {
                index -= block.Count;
                continue;
            }
            if (index == 0)
            {
                return position; // Offset 0: WriteEntries starts from the block's first ts.
            }
            var cursor = new PointCursor(block);
            for (var i = 0; i < index && cursor.Next(); i++)
            {
                position.Ts = cursor.Ts;
            }
            cursor.Next();
            position.Offset = cursor.Offset;
            return position;
        }
        return position;
    }

    /// <summary>Where <see cref="WriteEntries"/> resumes.</summary>
    public struct SnapshotPosition
    {
        internal int Block;
        internal int Offset;
        internal long Ts;
    }

    /// <summary>
    /// Removes the points in [<paramref name="startTs"/>, <paramref name="endTs"/>) (an end of
    /// <see cref="long.MaxValue"/> includes it, as in <see cref="Range"/>).
    /// </summary>
    public void Delete(long startTs, long endTs) => RemoveRange(startTs, endTs, endInclusive: endTs == long.MaxValue);

    /// <summary>Removes the points older than <paramref name="cutoffTs"/>.</summary>
    public void TrimBefore(long cutoffTs) => RemoveRange(long.MinValue, cutoffTs, endInclusive: false);

    /// <summary>Frees every block; the history is empty afterwards (and usable again).</summary>
    public void Dispose()
    {
        foreach (var block in _blocks)
        {
            block.Dispose();
        }
        _blocks.Clear();
        _count = 0;
    }

    private static bool BeforeEnd(long ts, long endTs, bool endInclusive) => endInclusive ? ts <= endTs : ts < endTs;

    private void Append(long ts, in KvEntry value, int payloadSize)
    {
        var count = _blocks.Count;
        if (count == 0 || !_blocks[count - 1].TryAppend(ts, value, payloadSize))
        {
            var block = new HistoryBlock(Math.Max(BlockSize, 1 + payloadSize));
            block.TryAppend(ts, value, payloadSize);
            _blocks.Add(block);
        }
        _count++;
    }

    /// <summary>The first block whose last ts is at or after <paramref name="ts"/> (the block count when none).</summary>
    private int FindFirstBlockEndingAtOrAfter(long ts)
    {
        int lo = 0, hi = _blocks.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (_blocks[mid].LastTs < ts)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        return lo;
    }

    /// <summary>Replaces block <paramref name="index"/> by its points with (ts, value) merged in: inserted, or replacing the point at ts.</summary>
    private void Rebuild(int index, long ts, in KvEntry value, int payloadSize)
    {
        byte[]? rented = null;
        Span<byte> payload = payloadSize <= 256 ? stackalloc byte[256] : (rented = ArrayPool<byte>.Shared.Rent(payloadSize));
        payload = payload[..payloadSize];
        WritePayload(payload, value);
        var old = _blocks[index];
        var builder = new BlockBuilder(isTail: index == _blocks.Count - 1);
        try
        {
            var inserted = false;
            var cursor = new PointCursor(old);
            while (cursor.Next())
            {
                if (!inserted && cursor.Ts >= ts)
                {
                    builder.Add(ts, payload);
                    inserted = true;
                    if (cursor.Ts == ts)
                    {
                        _count--; // replaced, not added
                        continue;
                    }
                }
                builder.Add(cursor.Ts, cursor.Payload);
            }
            if (!inserted)
            {
                builder.Add(ts, payload);
            }
            _count++;
            ReplaceBlock(index, old, builder.Finish());
        }
        finally
        {
            builder.Release();
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private void RemoveRange(long startTs, long endTs, bool endInclusive)
    {
        if (endInclusive ? endTs < startTs : endTs <= startTs)
        {
            return;
        }
        var i = FindFirstBlockEndingAtOrAfter(startTs);
        while (i < _blocks.Count)
        {
            var block = _blocks[i];
            if (!BeforeEnd(block.FirstTs, endTs, endInclusive))
            {
                break;
            }
            if (block.FirstTs >= startTs && BeforeEnd(block.LastTs, endTs, endInclusive))
            {
                _count -= block.Count;
                _blocks.RemoveAt(i);
                block.Dispose();
                continue;
            }

            var builder = new BlockBuilder(isTail: i == _blocks.Count - 1);
            try
            {
                var cursor = new PointCursor(block);
                while (cursor.Next())
                {
                    if (cursor.Ts >= startTs && BeforeEnd(cursor.Ts, endTs, endInclusive))
                    {
                        _count--;
                    }
                    else
                    {
                        builder.Add(cursor.Ts, cursor.Payload);
                    }
                }
                var rebuilt = builder.Finish();
                ReplaceBlock(i, block, rebuilt);
                i += rebuilt.Count;
            }
            finally
            {
                builder.Release();
            }
        }
    }

    private void ReplaceBlock(int index, HistoryBlock old, List<HistoryBlock> replacement)
    {
        _blocks.RemoveAt(index);
        _blocks.InsertRange(index, replacement);
        old.Dispose();
    }

    internal static int PayloadSize(in KvEntry value) => value.Type switch
    {
        DataType.Boolean => 2,
        DataType.Long or DataType.Double => 9,
        _ => StringSize(value.Text),
    };

    private static int StringSize(string? text)
    {
        var length = text is null ? 0 : Encoding.UTF8.GetByteCount(text);
        return 1 + VarIntSize((ulong)length) + length;
    }

    /// <summary>Writes type and value into <paramref name="destination"/>, exactly <see cref="PayloadSize"/> bytes.</summary>
    internal static void WritePayload(Span<byte> destination, in KvEntry value)
    {
        destination[0] = (byte)value.Type;
        switch (value.Type)
        {
            case DataType.Boolean:
                destination[1] = value.BooleanValue ? (byte)1 : (byte)0;
                break;
            case DataType.Long:
            case DataType.Double:
                // The raw 64 bits: a double's bits are stored as they are (NaN payloads included).
                BinaryPrimitives.WriteInt64LittleEndian(destination[1..], value.Type == DataType.Long
                    ? value.LongValue
                    : BitConverter.DoubleToInt64Bits(value.DoubleValue));
                break;
            default:
                var text = value.Text ?? string.Empty;
                var length = Encoding.UTF8.GetByteCount(text);
                var at = 1 + WriteVarInt(destination[1..], (ulong)length);
                Encoding.UTF8.GetBytes(text, destination.Slice(at, length));
                break;
        }
    }

    private static KvEntry Decode(string key, ReadOnlySpan<byte> payload)
    {
        var type = (DataType)payload[0];
        switch (type)
        {
            case DataType.Boolean:
                return new KvEntry(key, payload[1] != 0);
            case DataType.Long:
                return new KvEntry(key, BinaryPrimitives.ReadInt64LittleEndian(payload[1..]));
            case DataType.Double:
                return new KvEntry(key, BitConverter.Int64BitsToDouble(BinaryPrimitives.ReadInt64LittleEndian(payload[1..])));
            default:
                var length = (int)ReadVarInt(payload[1..], out var read);
                return new KvEntry(key, Encoding.UTF8.GetString(payload.Slice(1 + read, length)), isJson: type == DataType.Json);
        }
    }

    /// <summary>The payload's length (type byte included) from its first bytes.</summary>
    private static int PayloadLength(ReadOnlySpan<byte> data)
    {
        switch ((DataType)data[0])
        {
            case DataType.Boolean:
                return 2;
            case DataType.Long:
            case DataType.Double:
                return 9;
            default:
                var length = (int)ReadVarInt(data[1..], out var read);
                return 1 + read + length;
        }
    }

    internal static int VarIntSize(ulong value)
    {
        var size = 1;
        while (value >= 0x80)
        {
            value >>= 7;
            size++;
        }
        return size;
    }

    private static int WriteVarInt(Span<byte> destination, ulong value)
    {
        var i = 0;
        while (value >= 0x80)
        {
            destination[i++] = (byte)(value | 0x80);
            value >>= 7;
        }
        destination[i++] = (byte)value;
        return i;
    }

    private static ulong ReadVarInt(ReadOnlySpan<byte> source, out int read)
    {
        ulong value = 0;
        var shift = 0;
        for (var i = 0; ; i++)
        {
            var b = source[i];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                read = i + 1;
                return value;
            }
            shift += 7;
        }
    }

    /// <summary>Walks a block's points in order.</summary>
    private ref struct PointCursor
    {
        private readonly ReadOnlySpan<byte> _data;
        private int _position;

        public PointCursor(HistoryBlock block)
        {
            _data = block.Data;
            _position = 0;
            Ts = block.FirstTs;
            Offset = 0;
            Payload = default;
        }

        public long Ts { get; private set; }

        /// <summary>Where the current point (its delta) starts in the block.</summary>
        public int Offset { get; private set; }

        public ReadOnlySpan<byte> Payload { get; private set; }

        public bool Next()
        {
            if (_position >= _data.Length)
            {
                return false;
            }
            Offset = _position;
            var delta = ReadVarInt(_data[_position..], out var read);
            _position += read;
            Ts = unchecked(Ts + (long)delta);
            var length = PayloadLength(_data[_position..]);
            Payload = _data.Slice(_position, length);
            _position += length;
            return true;
        }
    }

    /// <summary>
    /// Re-encodes a run of points into new blocks of at most <see cref="BlockSize"/> (a larger point alone in
    /// its own block). Encodes into a pooled scratch buffer and copies each finished block into native memory
    /// of exactly its size, except the series' last block, which keeps a full block's room for appends.
    /// </summary>
    private struct BlockBuilder(bool isTail)
    {
        private readonly List<HistoryBlock> _result = [];
        private byte[]? _scratch;
        private int _used;
        private int _count;
        private long _firstTs;
        private long _lastTs;
        private int _lastOffset;

        public void Add(long ts, ReadOnlySpan<byte> payload)
        {
            var size = (_count == 0 ? 1 : VarIntSize(unchecked((ulong)(ts - _lastTs)))) + payload.Length;
            if (_count > 0 && _used + size > BlockSize)
            {
                Flush(last: false);
                size = 1 + payload.Length;
            }
            if (_scratch is null || _scratch.Length < _used + size)
            {
                var bigger = ArrayPool<byte>.Shared.Rent(Math.Max(BlockSize, _used + size));
                if (_scratch is not null)
                {
                    _scratch.AsSpan(0, _used).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(_scratch);
                }
                _scratch = bigger;
            }
            if (_count == 0)
            {
                _firstTs = ts;
                _lastTs = ts;
            }
            _lastOffset = _used;
            _used += WriteVarInt(_scratch.AsSpan(_used), unchecked((ulong)(ts - _lastTs)));
            payload.CopyTo(_scratch.AsSpan(_used));
            _used += payload.Length;
            _lastTs = ts;
            _count++;
        }

        public List<HistoryBlock> Finish()
        {
            if (_count > 0)
            {
                Flush(last: true);
            }
            return _result;
        }

        public void Release()
        {
            if (_scratch is not null)
            {
                ArrayPool<byte>.Shared.Return(_scratch);
                _scratch = null;
            }
        }

        private void Flush(bool last)
        {
            var block = new HistoryBlock(last && isTail ? Math.Max(BlockSize, _used) : _used);
            block.Load(_scratch.AsSpan(0, _used), _count, _firstTs, _lastTs, _lastOffset);
            _result.Add(block);
            _used = 0;
            _count = 0;
        }
    }

    /// <summary>One native block of encoded points and what the series needs to know without reading it.</summary>
    private sealed unsafe class HistoryBlock : SafeHandle
    {
        public HistoryBlock(int capacity)
            : base(IntPtr.Zero, ownsHandle: true)
        {
            Capacity = capacity;
            SetHandle((IntPtr)NativeMemory.Alloc((nuint)capacity));
            GC.AddMemoryPressure(capacity);
            Interlocked.Add(ref s_liveNativeBytes, capacity);
        }

        public int Capacity { get; }

        /// <summary>Bytes in use.</summary>
        public int Used { get; private set; }

        public int Count { get; private set; }

        public long FirstTs { get; private set; }

        public long LastTs { get; private set; }

        /// <summary>Where the last point starts.</summary>
        private int _lastOffset;

        public override bool IsInvalid => handle == IntPtr.Zero;

        public ReadOnlySpan<byte> Data => new((void*)handle, Used);

        private Span<byte> Memory => new((void*)handle, Capacity);

        public void Load(ReadOnlySpan<byte> encoded, int count, long firstTs, long lastTs, int lastOffset)
        {
            encoded.CopyTo(Memory);
            Used = encoded.Length;
            Count = count;
            FirstTs = firstTs;
            LastTs = lastTs;
            _lastOffset = lastOffset;
        }

        /// <summary>Appends a point newer than <see cref="LastTs"/> when it fits.</summary>
        public bool TryAppend(long ts, in KvEntry value, int payloadSize)
        {
            var delta = Count == 0 ? 0UL : unchecked((ulong)(ts - LastTs));
            if (Used + VarIntSize(delta) + payloadSize > Capacity)
            {
                return false;
            }
            var memory = Memory;
            _lastOffset = Used;
            var at = Used + WriteVarInt(memory[Used..], delta);
            WritePayload(memory.Slice(at, payloadSize), value);
            Used = at + payloadSize;
            if (Count == 0)
            {
                FirstTs = ts;
            }
            LastTs = ts;
            Count++;
            return true;
        }

        /// <summary>Replaces the last point (same ts, so the same delta) when the new value fits.</summary>
        public bool TryRewriteLast(in KvEntry value, int payloadSize)
        {
            var memory = Memory;
            ReadVarInt(memory[_lastOffset..], out var deltaSize);
            var at = _lastOffset + deltaSize;
            if (at + payloadSize > Capacity)
            {
                return false;
            }
            WritePayload(memory.Slice(at, payloadSize), value);
            Used = at + payloadSize;
            return true;
        }

        /// <summary>Replaces the point at <paramref name="ts"/> when there is one and the new value has the same size.</summary>
        public bool TryReplaceInPlace(long ts, in KvEntry value, int payloadSize)
        {
            if (ts < FirstTs || ts > LastTs)
            {
                return false;
            }
            var cursor = new PointCursor(this);
            while (cursor.Next())
            {
                if (cursor.Ts < ts)
                {
                    continue;
                }
                if (cursor.Ts > ts || cursor.Payload.Length != payloadSize)
                {
                    return false;
                }
                ReadVarInt(Data[cursor.Offset..], out var deltaSize);
                WritePayload(Memory.Slice(cursor.Offset + deltaSize, payloadSize), value);
                return true;
            }
            return false;
        }

        protected override bool ReleaseHandle()
        {
            NativeMemory.Free((void*)handle);
            GC.RemoveMemoryPressure(Capacity);
            Interlocked.Add(ref s_liveNativeBytes, -Capacity);
            return true;
        }
    }
}
