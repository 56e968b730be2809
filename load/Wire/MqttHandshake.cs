using System.Net;
using System.Net.Sockets;

namespace Perf.Load.Wire;

/// <summary>Opens a TCP connection and completes CONNECT / CONNACK.</summary>
public static class MqttHandshake
{
    /// <summary>Returns the connected socket, or throws with the reason (refused, CONNACK code, closed).</summary>
    public static async Task<Socket> ConnectAsync(EndPoint endPoint, byte[] connectPacket, TimeSpan timeout, CancellationToken cancellation)
    {
        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        timeoutSource.CancelAfter(timeout);
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(endPoint, timeoutSource.Token);
            await socket.SendAsync(connectPacket, SocketFlags.None, timeoutSource.Token);
            var connAck = new byte[4];
            var read = 0;
            while (read < connAck.Length)
            {
                var n = await socket.ReceiveAsync(connAck.AsMemory(read), SocketFlags.None, timeoutSource.Token);
                if (n == 0)
                {
                    throw new IOException("Connection closed before CONNACK.");
                }

                read += n;
            }

            if (connAck[0] >> 4 != MqttWire.ConnAckType)
            {
                throw new IOException($"Expected CONNACK, got packet type {connAck[0] >> 4}.");
            }

            if (connAck[3] != 0)
            {
                throw new IOException($"CONNACK refused with return code {connAck[3]}.");
            }

            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
