using System.Buffers.Binary;

namespace Perf.Fuzz.Harness;

/// <summary>
/// Coverage-less mutations in the style of AFL's havoc stage: bit and byte flips, interesting integers
/// (into length fields: MQTT remaining lengths, CoAP extended option lengths, length-field framer headers,
/// protobuf varints), quoted JSON strings swapped for values of other types, inserted, deleted and duplicated ranges, truncation, dictionary tokens and splicing
/// of two inputs. Stacks 1 to 16 mutations per input. Deterministic for a given <see cref="Random"/>.
/// </summary>
internal sealed class Mutator(IReadOnlyList<byte[]> dictionary, int maxLength)
{
    private static readonly byte[] InterestingBytes = [0x00, 0x01, 0x02, 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x20, 0x3F, 0x40, 0x7F, 0x80, 0x81, 0xC0, 0xFE, 0xFF];
    private static readonly ushort[] Interesting16 = [0, 1, 2, 12, 13, 14, 255, 256, 268, 269, 270, 1023, 1024, 4096, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF];
    private static readonly uint[] Interesting32 = [0, 1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1F_FFFF, 0x20_0000, 0x0FFF_FFFF, 0x1000_0000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF];

    // MQTT remaining-length / protobuf varint encodings at their boundaries.
    private static readonly byte[][] InterestingVarints =
    [
        [0x00], [0x7F], [0x80, 0x01], [0xFF, 0x7F], [0x80, 0x80, 0x01], [0xFF, 0xFF, 0x7F], [0x80, 0x80, 0x80, 0x01],
        [0xFF, 0xFF, 0xFF, 0x7F], [0xFF, 0xFF, 0xFF, 0xFF, 0x7F], [0x80, 0x00], [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
    ];

    private static readonly byte[][] JsonValues =
        [.. new[] { "1", "-0.0", "1e400", "true", "null", "[]", "{}", "[\"x\"]", "{\"a\":1}", "\"\"", "\"\\ud800\"", "9223372036854775808" }.Select(System.Text.Encoding.UTF8.GetBytes)];

    public byte[] Mutate(byte[] parent, Func<Random, byte[]> pickOther, Random rng)
    {
        var data = new List<byte>(parent);
        int stack = 1 << rng.Next(0, 5);
        for (int i = 0; i < stack; i++)
        {
            MutateOnce(data, pickOther, rng);
        }

        if (data.Count > maxLength)
        {
            data.RemoveRange(maxLength, data.Count - maxLength);
        }

        return [.. data];
    }

    private void MutateOnce(List<byte> data, Func<Random, byte[]> pickOther, Random rng)
    {
        if (data.Count == 0)
        {
            data.Add((byte)rng.Next(256));
            return;
        }

        int pos = rng.Next(data.Count);
        switch (rng.Next(17))
        {
            case 0:
                data[pos] ^= (byte)(1 << rng.Next(8));
                break;
            case 1:
                data[pos] = (byte)rng.Next(256);
                break;
            case 2:
                data[pos] = InterestingBytes[rng.Next(InterestingBytes.Length)];
                break;
            case 3:
                data[pos] = (byte)(data[pos] + rng.Next(-16, 17));
                break;
            case 4:
                WriteAt(data, pos, Bytes16(Interesting16[rng.Next(Interesting16.Length)], rng.Next(2) == 0));
                break;
            case 5:
                WriteAt(data, pos, Bytes32(Interesting32[rng.Next(Interesting32.Length)], rng.Next(2) == 0));
                break;
            case 6:
                {
                    // Replace what may be a varint at pos with a boundary encoding.
                    int old = 1;
                    while (old < 5 && pos + old - 1 < data.Count && (data[pos + old - 1] & 0x80) != 0)
                    {
                        old++;
                    }

                    data.RemoveRange(pos, Math.Min(old, data.Count - pos));
                    data.InsertRange(pos, InterestingVarints[rng.Next(InterestingVarints.Length)]);
                    break;
                }

            case 7:
                {
                    int count = RangeLength(rng, 16);
                    var bytes = new byte[count];
                    rng.NextBytes(bytes);
                    data.InsertRange(pos, bytes);
                    break;
                }

            case 8:
                data.RemoveRange(pos, Math.Min(RangeLength(rng, 32), data.Count - pos));
                break;
            case 9:
                {
                    int count = Math.Min(RangeLength(rng, 64), data.Count - pos);
                    var copy = data.GetRange(pos, count);
                    data.InsertRange(rng.Next(data.Count + 1), copy);
                    break;
                }

            case 10:
                {
                    int count = Math.Min(RangeLength(rng, 32), data.Count - pos);
                    var copy = data.GetRange(pos, count);
                    WriteAt(data, rng.Next(data.Count), [.. copy]);
                    break;
                }

            case 11:
                data.RemoveRange(pos, data.Count - pos);
                break;
            case 12 when dictionary.Count > 0:
                data.InsertRange(pos, dictionary[rng.Next(dictionary.Count)]);
                break;
            case 13 when dictionary.Count > 0:
                WriteAt(data, pos, dictionary[rng.Next(dictionary.Count)]);
                break;
            case 14:
                {
                    // Splice: our head, the other's tail.
                    var other = pickOther(rng);
                    if (other.Length > 0)
                    {
                        int from = rng.Next(other.Length);
                        data.RemoveRange(pos, data.Count - pos);
                        data.AddRange(other.AsSpan(from).ToArray());
                    }

                    break;
                }

            case 15:
                {
                    // JSON-aware: swap a quoted string (key or value) for a value of another type.
                    int open = data.IndexOf((byte)'"', pos);
                    int close = open < 0 ? -1 : data.IndexOf((byte)'"', open + 1);
                    if (close > open)
                    {
                        data.RemoveRange(open, close - open + 1);
                        data.InsertRange(open, JsonValues[rng.Next(JsonValues.Length)]);
                    }

                    break;
                }

            default:
                {
                    // Append a whole other input: several packets in one stream.
                    var other = pickOther(rng);
                    data.InsertRange(rng.Next(2) == 0 ? data.Count : 0, other);
                    break;
                }
        }
    }

    private static int RangeLength(Random rng, int max) => rng.Next(4) == 0 ? rng.Next(1, max * 8) : rng.Next(1, max);

    private static void WriteAt(List<byte> data, int pos, ReadOnlySpan<byte> bytes)
    {
        for (int i = 0; i < bytes.Length && pos + i < data.Count; i++)
        {
            data[pos + i] = bytes[i];
        }
    }

    private static byte[] Bytes16(ushort value, bool bigEndian)
    {
        var b = new byte[2];
        if (bigEndian)
        {
            BinaryPrimitives.WriteUInt16BigEndian(b, value);
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(b, value);
        }

        return b;
    }

    private static byte[] Bytes32(uint value, bool bigEndian)
    {
        var b = new byte[4];
        if (bigEndian)
        {
            BinaryPrimitives.WriteUInt32BigEndian(b, value);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        }

        return b;
    }
}
