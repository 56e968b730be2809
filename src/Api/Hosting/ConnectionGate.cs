using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Perf.Core;
using Perf.Kestrel.Mqtt;

namespace Perf.Api.Hosting;

/// <summary>
/// Kestrel connection middleware in front of a door: refuses a new connection whose source address connects
/// faster than <c>CONN_RATE_PER_IP</c>, or that would take the door past its connection limit. A refused
/// connection is closed before the door sees a byte (MQTT: no CONNACK; HTTP: no response), counted in
/// <c>perf_guard_connections_refused{door,reason}</c> and logged by <see cref="ConnectionGuard"/> (Debug per
/// connection, one Warning per burst).
/// </summary>
public static class ConnectionGate
{
    /// <summary>Adds the gate; call before the door's <c>UseXxx()</c> (Kestrel runs connection middleware in the order added).</summary>
    public static ListenOptions UseConnectionGate(this ListenOptions listen, ConnectionGuard guard, ConnectionQuota quota)
    {
        listen.Use(next => connection =>
        {
            var remote = (connection.RemoteEndPoint as IPEndPoint)?.Address;
            if (!guard.TryAdmit(quota.Door, remote) || !quota.TryEnter(remote))
            {
                // Closed before the door reads a byte; returning alone would leave the socket open until the peer closes.
                connection.Abort(new ConnectionAbortedException("refused by the connection gate"));
                return Task.CompletedTask;
            }

            // On the lean transport the quota is left when the connection is disposed: no frame of ours is held by
            // each open connection (issue 12, memory per idle connection).
            if (connection.Features.Get<ILeanConnectionEndFeature>() is { } end && end.TryOnEnd(static q => ((ConnectionQuota)q).Exit(), quota))
            {
                return next(connection);
            }

            return RunThenExitAsync(next, connection, quota);
        });
        return listen;
    }

    private static async Task RunThenExitAsync(ConnectionDelegate next, ConnectionContext connection, ConnectionQuota quota)
    {
        try
        {
            await next(connection);
        }
        finally
        {
            quota.Exit();
        }
    }
}
