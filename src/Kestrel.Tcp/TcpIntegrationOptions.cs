namespace Perf.Kestrel.Tcp;

/// <summary>Settings of the TCP integration door.</summary>
public sealed class TcpIntegrationOptions
{
    /// <summary>Longest frame accepted; a longer one closes the connection (seed: maxFrameLength).</summary>
    public int MaxFrameLength { get; set; } = 128;
}
