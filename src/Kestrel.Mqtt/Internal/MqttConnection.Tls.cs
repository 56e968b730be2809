using Microsoft.AspNetCore.Http.Features;
using Perf.Core.Domain;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>X.509 client certificates as device credentials (MQTT over TLS).</summary>
internal sealed partial class MqttConnection
{
    /// <summary>
    /// True when the connection came through TLS with a client certificate: the certificate is then the credential
    /// and the username is ignored, as in the reference (its MQTT transport checks the certificate before the
    /// token). <paramref name="device"/> is null when the certificate is no device's credentials.
    /// </summary>
    private bool TryAuthenticateByCertificate(out Device? device)
    {
        // Set by Kestrel's TLS middleware (UseHttps on the listener); absent on the plain port.
        if (_connection.Features.Get<ITlsConnectionFeature>()?.ClientCertificate is not { } certificate)
        {
            device = null;
            return false;
        }

        device = _door.Api.AuthenticateCertificate(certificate.RawDataMemory.Span);
        if (device is null)
        {
            MqttLog.UnknownCertificate(_door.Logger, ConnectionId, certificate.Subject, certificate.Thumbprint);
        }

        return true;
    }
}
