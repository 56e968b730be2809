using System.Buffers.Binary;
using System.Text;

namespace Perf.Load.Wire;

/// <summary>Minimal CoAP (RFC 7252) for a confirmable POST with a 4-byte token, encoded once and patched per send.</summary>
public static class CoapWire
{
    public const int TokenLength = 4;
    public const int MessageIdOffset = 2;
    public const int TokenOffset = 4;

    public const byte TypeConfirmable = 0;
    public const byte TypeNonConfirmable = 1;
    public const byte TypeAcknowledgement = 2;
    public const byte TypeReset = 3;

    private const byte CodePost = 0x02; // 0.02
    private const int UriPath = 11;
    private const int ContentFormat = 12;
    private const byte ApplicationJson = 50;

    /// <summary>CON POST /api/v1/{token}/telemetry, Content-Format application/json (RFC 7252 §3, §5.10).</summary>
    public static byte[] ConfirmablePost(string deviceToken, ReadOnlySpan<byte> payload)
    {
        var message = new List<byte>(64 + payload.Length)
        {
            (byte)(0x40 | (TypeConfirmable << 4) | TokenLength), // version 1, CON, TKL 4
            CodePost,
            0, 0, // message id, patched
            0, 0, 0, 0, // token, patched
        };
        var previous = 0;
        foreach (var segment in new[] { "api", "v1", deviceToken, "telemetry" })
        {
            AppendOption(message, UriPath - previous, Encoding.UTF8.GetBytes(segment));
            previous = UriPath;
        }

        AppendOption(message, ContentFormat - previous, [ApplicationJson]);
        message.Add(0xFF);
        message.AddRange(payload.ToArray());
        return [.. message];
    }

    /// <summary>An empty ACK for a separate (CON) response (RFC 7252 §5.2.2).</summary>
    public static void EmptyAck(Span<byte> destination, ushort messageId)
    {
        destination[0] = 0x40 | (TypeAcknowledgement << 4);
        destination[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], messageId);
    }

    public static bool TryParseHeader(ReadOnlySpan<byte> datagram, out byte type, out byte code, out ushort messageId, out ReadOnlySpan<byte> token)
    {
        type = code = 0;
        messageId = 0;
        token = default;
        if (datagram.Length < 4 || (datagram[0] >> 6) != 1)
        {
            return false;
        }

        var tokenLength = datagram[0] & 0x0F;
        if (tokenLength > 8 || datagram.Length < 4 + tokenLength)
        {
            return false;
        }

        type = (byte)((datagram[0] >> 4) & 0x03);
        code = datagram[1];
        messageId = BinaryPrimitives.ReadUInt16BigEndian(datagram[2..]);
        token = datagram.Slice(4, tokenLength);
        return true;
    }

    private static void AppendOption(List<byte> message, int delta, byte[] value)
    {
        var (deltaNibble, deltaExtra) = Nibble(delta);
        var (lengthNibble, lengthExtra) = Nibble(value.Length);
        message.Add((byte)((deltaNibble << 4) | lengthNibble));
        message.AddRange(deltaExtra);
        message.AddRange(lengthExtra);
        message.AddRange(value);
    }

    // RFC 7252 §3.1: 0-12 inline, 13 + 1 byte, 14 + 2 bytes.
    private static (int Nibble, byte[] Extra) Nibble(int value) => value switch
    {
        < 13 => (value, []),
        < 269 => (13, [(byte)(value - 13)]),
        _ => (14, [(byte)((value - 269) >> 8), (byte)(value - 269)]),
    };
}
