using System.Net;

namespace Perf.Coap;

/// <summary>Settings of the CoAP door.</summary>
public sealed class CoapOptions
{
    public IPAddress BindAddress { get; set; } = IPAddress.Any;

    /// <summary>UDP port; 0 binds a free port (read it back from <see cref="CoapServer.LocalEndPoint"/>).</summary>
    public int Port { get; set; } = 5683;

    /// <summary>Largest datagram answered (RFC 7252 §4.6 recommends 1152 bytes of message; block-wise carries more).</summary>
    public int MaxDatagramSize { get; set; } = 2048;

    /// <summary>Largest block (RFC 7959) the server sends; responses above it go block-wise. A power of two, 16..1024.</summary>
    public int BlockSize { get; set; } = 1024;

    /// <summary>Largest body assembled from Block1 uploads; larger ones are answered 4.13 with Size1.</summary>
    public int MaxBodySize { get; set; } = 1024 * 1024;

    /// <summary>Block1 uploads being assembled at once; more are answered 5.03.</summary>
    public int MaxConcurrentUploads { get; set; } = 1024;

    /// <summary>Remembered (endpoint, message id) pairs for de-duplication (RFC 7252 §4.5); about 200 bytes each.</summary>
    public int DeduplicationCapacity { get; set; } = 16384;

    /// <summary>Pooled exchanges kept for reuse.</summary>
    public int ExchangePoolSize { get; set; } = 1024;

    /// <summary>Multiplier on ACK_TIMEOUT (2 s); tests shrink it to watch retransmissions quickly.</summary>
    public double AckTimeoutScale { get; set; } = 1.0;
}
