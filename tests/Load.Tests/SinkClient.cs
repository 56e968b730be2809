using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Perf.Load.Tests;

/// <summary>Hand-built MQTT packets and exact reads for the tests of load/'s durable ceilings and floors.</summary>
internal static class SinkClient
{
    public static readonly byte[] Connect = [0x10, 0x0C, 0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x00];

    public static readonly byte[] ConnAck = [0x20, 0x02, 0x00, 0x00];

    /// <summary>A QoS 1 PUBLISH (remaining length under 128).</summary>
    public static byte[] Publish(ushort packetId, string topic, string payload)
    {
        var topicBytes = Encoding.UTF8.GetBytes(topic);
        var payloadBytes = Encoding.UTF8.GetBytes(payload);
        var remaining = 2 + topicBytes.Length + 2 + payloadBytes.Length;
        Assert.True(remaining < 128);
        return [0x32, (byte)remaining, (byte)(topicBytes.Length >> 8), (byte)topicBytes.Length, .. topicBytes, (byte)(packetId >> 8), (byte)packetId, .. payloadBytes];
    }

    public static byte[] PubAck(int packetId) => [0x40, 0x02, (byte)(packetId >> 8), (byte)packetId];

    public static async Task<Socket> ConnectAsync(IPEndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint);
        return socket;
    }

    /// <summary>Exactly <paramref name="length"/> bytes, within 30 s; fails if the server closes first.</summary>
    public static async Task<byte[]> ReadAsync(Socket socket, int length)
    {
        var buffer = new byte[length];
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        for (var read = 0; read < length;)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, deadline.Token);
            Assert.True(n > 0, $"connection closed after {read} of {length} bytes");
            read += n;
        }

        return buffer;
    }

    /// <summary>
    /// The checks every durable sink passes: CONNACK; a PUBACK that comes only once its PUBLISH is in
    /// <paramref name="file"/>; 500 pipelined PUBLISHes answered in order; a malformed packet closes only its own
    /// connection. Sends 502 PUBLISHes in all and returns the bytes sent.
    /// </summary>
    public static async Task<long> ExerciseAsync(IPEndPoint endPoint, Func<string> file)
    {
        using var socket = await ConnectAsync(endPoint);
        await socket.SendAsync(Connect);
        Assert.Equal(ConnAck, await ReadAsync(socket, 4));

        var first = Publish(0x0102, "v1/devices/me/telemetry", """{"t":1}""");
        await socket.SendAsync(first);
        Assert.Equal(PubAck(0x0102), await ReadAsync(socket, 4));
        // Sent after the write-through write that holds it: the PUBLISH is in the file now.
        Assert.True((await File.ReadAllBytesAsync(file())).AsSpan().IndexOf(first) >= 0);

        var many = Enumerable.Range(1, 500).SelectMany(i => Publish((ushort)i, "t", $"{{\"n\":{i}}}")).ToArray();
        await socket.SendAsync(many);
        var answers = await ReadAsync(socket, 4 * 500);
        for (var i = 1; i <= 500; i++)
        {
            Assert.Equal(PubAck(i), answers.AsSpan(4 * (i - 1), 4).ToArray());
        }

        // A remaining length of more than 4 bytes closes that connection; the first one still works.
        using (var bad = await ConnectAsync(endPoint))
        {
            await bad.SendAsync(new byte[] { 0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 });
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal(0, await bad.ReceiveAsync(new byte[4], SocketFlags.None, deadline.Token));
        }

        var last = Publish(7, "t", "{}");
        await socket.SendAsync(last);
        Assert.Equal(PubAck(7), await ReadAsync(socket, 4));
        return Connect.Length + first.Length + many.Length + last.Length;
    }
}
