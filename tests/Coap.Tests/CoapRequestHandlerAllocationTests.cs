using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Perf.Coap.Internal;

namespace Perf.Coap.Tests;

public sealed class CoapRequestHandlerAllocationTests
{
    [Fact]
    public void TelemetryPost_FromDatagramToSentAck_AllocatesNothingInSteadyState()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        peer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var remote = ((IPEndPoint)peer.LocalEndPoint!).Serialize();

        var api = new FakeDeviceApi { Quiet = true };
        var handler = new CoapRequestHandler(socket, api, new RecordingSessionTable(),
            new CoapOptions { DeduplicationCapacity = 256 }, NullLogger.Instance);
        var datagram = CoapServerHarness.Request(CoapMessageType.Confirmable, CoapCode.Post, 0, [1, 2, 3, 4], "api/v1/good/telemetry",
            w => w.UInt(CoapOptionNumber.ContentFormat, CoapContentFormat.Json), "{\"temperature\":25}"u8.ToArray());
        var buffer = new byte[65536];
        datagram.CopyTo(buffer, 0);

        void Post(ushort id)
        {
            buffer[2] = (byte)(id >> 8);
            buffer[3] = (byte)id;
            handler.OnDatagram(buffer, datagram.Length, remote);
        }

        // Warm up past one wrap of the de-duplication ring so every structure has reached its size.
        ushort next = 0;
        for (var i = 0; i < 600; i++)
        {
            Post(next++);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 2000; i++)
        {
            Post(next++);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        // And the ACKs really went out: a 2.01 piggybacked with the request's token.
        var ack = new byte[64];
        var length = peer.Receive(ack);
        var reply = CoapTestMessage.Parse(ack[..length]);
        Assert.Equal(CoapMessageType.Acknowledgement, reply.Type);
        Assert.Equal(CoapCode.Created, reply.Code);
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, reply.Token);
    }
}
