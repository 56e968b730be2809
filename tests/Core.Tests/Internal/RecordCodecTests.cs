using Perf.Core.Internal;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests.Internal;

/// <summary>The record codec's varints and counts on damaged input: refused as <see cref="InvalidDataException"/>, never sized into memory.</summary>
public class RecordCodecTests
{
    private static byte[] Bytes(Action<RecordWriterBox> write)
    {
        var box = new RecordWriterBox();
        write(box);
        var buffer = box.Writer.Detach(out var length);
        return buffer.AsSpan(0, length).ToArray();
    }

    // RecordWriter is a struct with a pooled buffer: the box lets a lambda write into one instance.
    private sealed class RecordWriterBox
    {
        public RecordWriter Writer = new(RecordKind.Telemetry);
    }

    [Fact]
    public void ReadVarUInt64_ReadsEveryWidth_AndRefusesBitsBeyond64()
    {
        ulong[] values = [0, 1, 127, 128, uint.MaxValue, (ulong)uint.MaxValue + 1, long.MaxValue, ulong.MaxValue];
        var bytes = Bytes(b =>
        {
            foreach (var value in values)
            {
                b.Writer.WriteVarUInt64(value);
            }
        });
        var reader = new RecordReader(bytes, new KeyTable());
        Assert.Equal((byte)RecordKind.Telemetry, reader.ReadByte());
        foreach (var value in values)
        {
            Assert.Equal(value, reader.ReadVarUInt64());
        }
        Assert.True(reader.End);

        // Nine continuation bytes, then a tenth with more than the 64th bit: it used to wrap silently.
        byte[] tooWide = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02];
        Assert.Throws<InvalidDataException>(() => new RecordReader(tooWide, new KeyTable()).ReadVarUInt64());
        // A value above 32 bits where a 32-bit one is read.
        var wide = Bytes(b => b.Writer.WriteVarUInt64((ulong)uint.MaxValue + 1));
        Assert.Throws<InvalidDataException>(() =>
        {
            var r = new RecordReader(wide, new KeyTable());
            r.ReadByte();
            return r.ReadVarUInt();
        });
    }

    [Fact]
    public void ReadCount_RefusesACountBeyondTheBytesLeft()
    {
        var bytes = Bytes(b =>
        {
            b.Writer.WriteVarUInt(3);
            b.Writer.WriteByte(1);
            b.Writer.WriteByte(2);
            b.Writer.WriteByte(3);
        });
        var reader = new RecordReader(bytes, new KeyTable());
        reader.ReadByte();
        Assert.Equal(3, reader.ReadCount());

        foreach (var count in new ulong[] { 4, int.MaxValue, (ulong)int.MaxValue + 1, 1UL << 40 })
        {
            var damaged = Bytes(b =>
            {
                b.Writer.WriteVarUInt64(count);
                b.Writer.WriteByte(1);
                b.Writer.WriteByte(2);
                b.Writer.WriteByte(3);
            });
            Assert.Throws<InvalidDataException>(() =>
            {
                var r = new RecordReader(damaged, new KeyTable());
                r.ReadByte();
                return r.ReadCount();
            });
        }
    }

    [Fact]
    public async Task AHistoryChunkWithADamagedCount_IsRefused_NotAllocated()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var w = new RecordWriter(RecordKind.TelemetryHistory);
        w.WriteGuid(device.Id);
        w.WriteString("temperature");
        w.WriteVarUInt(1u << 30); // about 40 GB of entries, if it were believed
        w.WriteInt64(1);
        var buffer = w.Detach(out var length);
        var record = buffer.AsSpan(0, length).ToArray();

        Assert.Throws<InvalidDataException>(() =>
        {
            var reader = new RecordReader(record, new KeyTable());
            var kind = (RecordKind)reader.ReadByte();
            engine.Telemetry.Replay(kind, ref reader);
        });
    }
}
