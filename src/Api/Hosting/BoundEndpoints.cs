using System.Net;

namespace Perf.Api.Hosting;

/// <summary>The addresses each door actually bound (port 0 resolved), known once the host has started.</summary>
public sealed class BoundEndpoints
{
    public IPEndPoint? Http { get; internal set; }
    public IPEndPoint? Mqtt { get; internal set; }
    public IPEndPoint? TcpIntegration { get; internal set; }
    public IPEndPoint? Coap { get; internal set; }
    public IPEndPoint? Edges { get; internal set; }

    /// <summary>MQTT over TLS (<c>MQTT_SSL_ENABLED</c>), null when off.</summary>
    public IPEndPoint? MqttTls { get; internal set; }

    /// <summary>HTTPS for the REST and HTTP device APIs (<c>SSL_ENABLED</c>), null when off.</summary>
    public IPEndPoint? Https { get; internal set; }

    /// <summary>True once every enabled door is bound.</summary>
    public bool AllBound { get; internal set; }
}
