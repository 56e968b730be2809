using System.Net;
using System.Runtime.InteropServices;

namespace Perf.Coap.Internal;

/// <summary>
/// A peer's address as a value (the raw sockaddr bytes, up to the 28 of IPv6), so the de-duplication and
/// block-wise tables key on it without allocating an <see cref="IPEndPoint"/> per datagram.
/// </summary>
internal readonly record struct CoapEndpointKey(ulong A, ulong B, ulong C, uint D)
{
    public static CoapEndpointKey From(SocketAddress address)
    {
        Span<byte> raw = stackalloc byte[32];
        raw.Clear();
        var size = Math.Min(address.Size, 28);
        address.Buffer.Span[..size].CopyTo(raw);
        var words = MemoryMarshal.Cast<byte, ulong>(raw);
        return new CoapEndpointKey(words[0], words[1], words[2], (uint)words[3]);
    }
}

internal static class SocketAddressCopy
{
    /// <summary>Copies <paramref name="source"/> into <paramref name="target"/> (same family, capacity large enough).</summary>
    public static void Copy(SocketAddress source, SocketAddress target)
    {
        target.Size = source.Size;
        source.Buffer.Span[..source.Size].CopyTo(target.Buffer.Span);
    }

    public static SocketAddress Clone(SocketAddress source)
    {
        var clone = new SocketAddress(source.Family, source.Buffer.Length);
        Copy(source, clone);
        return clone;
    }
}
