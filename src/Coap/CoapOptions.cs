using System.Net;

namespace Perf.Coap;

/// <summary>Settings of the CoAP door.</summary>
public sealed class CoapOptions
{
    public IPAddress BindAddress { get; set; } = IPAddress.Any;

    /// <summary>UDP port; 0 binds a free port (read it back from <see cref="CoapServer.LocalEndPoint"/>).</summary>
    public int Port { get; set; } = 5683;

    /// <summary>Largest datagram accepted (RFC 7252 §4.6 recommends 1152 bytes of message; block-wise carries more).</summary>
    public int MaxDatagramSize { get; set; } = 2048;
}
