using System.Net;
using System.Net.Sockets;
using System.Text;
using Perf.Load.Scenarios;

namespace Perf.Load.Tests;

/// <summary>
/// load/'s bare-server: the plain ceiling answers CONNECT and QoS 1 PUBLISH and keeps nothing; the durable ceiling
/// (<c>--durable</c>) sends a PUBACK only once the PUBLISH is in its file, keeps answering in order across many
/// groups, and deletes the file when it stops.
/// </summary>
public sealed class BareServerTests : IDisposable
{
    private static readonly byte[] Connect = [0x10, 0x0C, 0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x00];
    private readonly string _directory = Directory.CreateTempSubdirectory("bare-server-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task Durable_PubAckComesOnlyOnceThePublishIsInTheFile_AndTheFileIsDeletedAtStop()
    {
        string path;
        await using (var server = await RunningBareServer.StartAsync(IPAddress.Loopback, 0, _directory, CancellationToken.None))
        {
            path = server.SinkPath!;
            Assert.Equal(_directory, Path.GetDirectoryName(path));
            using var socket = await ConnectAsync(server.EndPoint);
            await socket.SendAsync(Connect);
            Assert.Equal([0x20, 0x02, 0x00, 0x00], await ReadAsync(socket, 4));

            var publish = Publish(0x1234, "v1/devices/me/telemetry", """{"temperature":21.5}""");
            await socket.SendAsync(publish);
            Assert.Equal([0x40, 0x02, 0x12, 0x34], await ReadAsync(socket, 4));
            // The PUBACK was sent after the write that holds the PUBLISH returned: it is in the file now.
            var written = await File.ReadAllBytesAsync(path);
            Assert.True(written.AsSpan().IndexOf(publish) >= 0, $"the PUBLISH is not in the sink's {written.Length} bytes");
        }

        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task Durable_AnswersEveryPublishOfManyPipelinedOnesInOrder_AcrossSegments_AndDeletesThemAll()
    {
        await using var server = await RunningBareServer.StartAsync(IPAddress.Loopback, 0, _directory, CancellationToken.None, segmentBytes: 4096);
        using var socket = await ConnectAsync(server.EndPoint);
        await socket.SendAsync(Connect);
        Assert.Equal([0x20, 0x02, 0x00, 0x00], await ReadAsync(socket, 4));

        const int count = 2000;
        var all = new MemoryStream();
        for (var id = 1; id <= count; id++)
        {
            all.Write(Publish((ushort)id, "t", $"{{\"n\":{id}}}"));
        }

        // One send of them all: the server reads them in several reads, and so answers them from several groups.
        var sending = socket.SendAsync(all.ToArray());
        var answers = await ReadAsync(socket, 4 * count);
        await sending;
        for (var id = 1; id <= count; id++)
        {
            var answer = answers.AsSpan(4 * (id - 1), 4);
            Assert.Equal([0x40, 0x02, (byte)(id >> 8), (byte)id], answer.ToArray());
        }

        // About 30 KB in segments of 4 KB: the sink moved on, and never holds more than a few segments.
        Assert.Matches(@"bare-sink-\d+\.([1-9]\d*)\.log$", server.SinkPath!);
        socket.Dispose();
        await server.DisposeAsync();
        Assert.Empty(Directory.GetFiles(_directory));
    }

    [Fact]
    public async Task Plain_AnswersConnectAndPublish_AndWritesNothing()
    {
        await using var server = await RunningBareServer.StartAsync(IPAddress.Loopback, 0, durableDirectory: null, CancellationToken.None);
        Assert.Null(server.SinkPath);
        using var socket = await ConnectAsync(server.EndPoint);
        await socket.SendAsync(Connect);
        Assert.Equal([0x20, 0x02, 0x00, 0x00], await ReadAsync(socket, 4));
        await socket.SendAsync(Publish(7, "t", "{}"));
        Assert.Equal([0x40, 0x02, 0x00, 0x07], await ReadAsync(socket, 4));
        Assert.Empty(Directory.GetFiles(_directory));
    }

    private static byte[] Publish(ushort packetId, string topic, string payload)
    {
        var topicBytes = Encoding.UTF8.GetBytes(topic);
        var payloadBytes = Encoding.UTF8.GetBytes(payload);
        var remaining = 2 + topicBytes.Length + 2 + payloadBytes.Length;
        Assert.True(remaining < 128);
        return [0x32, (byte)remaining, (byte)(topicBytes.Length >> 8), (byte)topicBytes.Length, .. topicBytes, (byte)(packetId >> 8), (byte)packetId, .. payloadBytes];
    }

    private static async Task<Socket> ConnectAsync(IPEndPoint endPoint)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint);
        return socket;
    }

    private static async Task<byte[]> ReadAsync(Socket socket, int length)
    {
        var buffer = new byte[length];
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        for (var read = 0; read < length;)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read), deadline.Token);
            Assert.True(n > 0, $"connection closed after {read} of {length} bytes");
            read += n;
        }

        return buffer;
    }
}
