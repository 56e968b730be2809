using System.Net;
using System.Net.Sockets;

namespace Perf.Load;

/// <summary>Host/port resolution shared by the scenarios. Runs go to loopback unless the user names a host.</summary>
public static class Targets
{
    public static EndPoint Resolve(string host, int port)
    {
        if (IPAddress.TryParse(host, out var address))
        {
            return new IPEndPoint(address, port);
        }

        var addresses = Dns.GetHostAddresses(host);
        var chosen = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.FirstOrDefault()
            ?? throw new OptionsException($"--host: cannot resolve '{host}'.");
        return new IPEndPoint(chosen, port);
    }
}
