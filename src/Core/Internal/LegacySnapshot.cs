using System.Buffers;
using System.Buffers.Binary;

namespace Perf.Core.Internal;

/// <summary>
/// Reader of the pre-FasterKV snapshot file (<c>DataDir/snapshot.bin</c>: "PERFSNP1", the log address it
/// is consistent with (int64), length-prefixed records in the log's own encoding, a -1 length and the
/// record count). Nothing writes it any more; a data directory that has one but no FasterKV checkpoint
/// is loaded from it once, and the file is deleted after the first FasterKV checkpoint.
/// </summary>
internal static class LegacySnapshot
{
    private static ReadOnlySpan<byte> Magic => "PERFSNP1"u8;

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
