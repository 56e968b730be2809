using System.Buffers;
using System.Buffers.Binary;

namespace Perf.Core.Internal;

/// <summary>
/// Snapshot file: "PERFSNP1", the log address it is consistent with (int64), then length-prefixed
/// records in the log's own encoding, then a -1 length and the record count. Written to a temporary
/// file, flushed to disk and renamed over the previous one, so a crash leaves the old or the new.
/// </summary>
internal sealed class SnapshotWriter : IDisposable
{
    private static ReadOnlySpan<byte> Magic => "PERFSNP1"u8;

    private readonly FileStream _file;
    private readonly BufferedStream _out;
    private readonly string _tempPath;
    private readonly string _path;

    public SnapshotWriter(string path, long logAddress)
    {
        _path = path;
        _tempPath = path + ".tmp";
        _file = new FileStream(_tempPath, FileMode.Create, FileAccess.Write, FileShare.None, 1);
        _out = new BufferedStream(_file, 1 << 20);
        _out.Write(Magic);
        Span<byte> address = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(address, logAddress);
        _out.Write(address);
    }

    public long Records { get; private set; }

    public void Write(ref RecordWriter record)
    {
        var buffer = record.Detach(out var length);
        Span<byte> prefix = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(prefix, length);
        _out.Write(prefix);
        _out.Write(buffer, 0, length);
        ArrayPool<byte>.Shared.Return(buffer);
        Records++;
    }

    /// <summary>Finishes the file durably and atomically replaces the previous snapshot.</summary>
    public void Commit()
    {
        Span<byte> footer = stackalloc byte[12];
        BinaryPrimitives.WriteInt32LittleEndian(footer, -1);
        BinaryPrimitives.WriteInt64LittleEndian(footer[4..], Records);
        _out.Write(footer);
        _out.Flush();
        _file.Flush(flushToDisk: true);
        _out.Dispose();
        File.Move(_tempPath, _path, overwrite: true);
    }

    public void Dispose() => _out.Dispose();

    /// <summary>Feeds every record of the snapshot at <paramref name="path"/> to <paramref name="sink"/>; returns its log address (0 when none).</summary>
    public static long Load(string path, RecordSink sink, out long records)
    {
        records = 0;
        if (!File.Exists(path))
        {
            return 0;
        }
        using var stream = new BufferedStream(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1), 1 << 20);
        Span<byte> header = stackalloc byte[16];
        stream.ReadExactly(header);
        if (!header[..8].SequenceEqual(Magic))
        {
            throw new InvalidDataException($"{path} is not a snapshot file.");
        }
        var address = BinaryPrimitives.ReadInt64LittleEndian(header[8..]);
        Span<byte> prefix = stackalloc byte[8];
        var buffer = ArrayPool<byte>.Shared.Rent(4096);
        try
        {
            while (true)
            {
                stream.ReadExactly(prefix[..4]);
                var length = BinaryPrimitives.ReadInt32LittleEndian(prefix);
                if (length < 0)
                {
                    stream.ReadExactly(prefix);
                    if (BinaryPrimitives.ReadInt64LittleEndian(prefix) != records)
                    {
                        throw new InvalidDataException($"{path} is damaged (record count mismatch).");
                    }
                    return address;
                }
                if (length > buffer.Length)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = ArrayPool<byte>.Shared.Rent(length);
                }
                stream.ReadExactly(buffer, 0, length);
                sink(buffer.AsSpan(0, length));
                records++;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
