namespace Perf.Coap.Internal;

/// <summary>
/// Answers one datagram. RFC 7252 §3: 4-byte header (Ver, Type, TKL, Code, Message ID), token, options, payload.
/// </summary>
internal static class CoapResponder
{
    private const byte TypeConfirmable = 0, TypeNonConfirmable = 1, TypeAcknowledgement = 2, TypeReset = 3;
    private const byte CodeEmpty = 0x00, CodeNotFound = 0x84; // 4.04

    /// <summary>Writes the reply into <paramref name="output"/> and returns its length; 0 means no reply.</summary>
    public static int Respond(ReadOnlySpan<byte> datagram, Span<byte> output)
    {
        if (datagram.Length < 4 || (datagram[0] >> 6) != 1)
        {
            return 0; // §4.2/§4.3: a message we cannot parse is silently ignored.
        }

        var type = (byte)((datagram[0] >> 4) & 0x3);
        var tokenLength = datagram[0] & 0xF;
        var code = datagram[1];
        if (tokenLength > 8 || datagram.Length < 4 + tokenLength)
        {
            return 0; // §3: TKL 9-15 is a message format error.
        }

        if (code == CodeEmpty)
        {
            // §4.3: an empty Confirmable message is a "CoAP ping" answered with Reset.
            if (type != TypeConfirmable)
            {
                return 0;
            }

            output[0] = (byte)(0x40 | (TypeReset << 4));
            output[1] = CodeEmpty;
            output[2] = datagram[2];
            output[3] = datagram[3];
            return 4;
        }

        if ((code >> 5) != 0 || type is TypeAcknowledgement or TypeReset)
        {
            return 0; // Only requests (class 0) are answered here.
        }

        // No resources are routed yet: piggyback 4.04 on the ACK (CON) or answer NON with NON.
        var replyType = type == TypeConfirmable ? TypeAcknowledgement : TypeNonConfirmable;
        output[0] = (byte)(0x40 | (replyType << 4) | tokenLength);
        output[1] = CodeNotFound;
        output[2] = datagram[2];
        output[3] = datagram[3];
        datagram.Slice(4, tokenLength).CopyTo(output[4..]);
        return 4 + tokenLength;
    }
}
