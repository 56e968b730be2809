using System.Net;
using Perf.Load.Scenarios;

namespace Perf.Load.Tests;

/// <summary>
/// load/'s bare-server: the plain ceiling answers CONNECT and QoS 1 PUBLISH and keeps nothing; the durable ceiling
/// (<c>--durable</c>) sends a PUBACK only once the PUBLISH is in its file, keeps answering in order across many
/// groups and segments, and deletes its files when it stops.
/// </summary>
public sealed class BareServerTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("bare-server-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task Durable_PubAckComesOnlyOnceThePublishIsInTheFile_InOrder_AndTheFileIsDeletedAtStop()
    {
        string path;
        await using (var server = await RunningBareServer.StartAsync(IPAddress.Loopback, 0, _directory, CancellationToken.None))
        {
            path = server.SinkPath!;
            Assert.Equal(_directory, Path.GetDirectoryName(path));
            var sent = await SinkClient.ExerciseAsync(server.EndPoint, () => server.SinkPath!);
            Assert.Equal(sent, new FileInfo(path).Length);
        }

        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task Durable_AnswersEveryPublishOfManyPipelinedOnesInOrder_AcrossSegments_AndDeletesThemAll()
    {
        await using var server = await RunningBareServer.StartAsync(IPAddress.Loopback, 0, _directory, CancellationToken.None, segmentBytes: 4096);
        using var socket = await SinkClient.ConnectAsync(server.EndPoint);
        await socket.SendAsync(SinkClient.Connect);
        Assert.Equal(SinkClient.ConnAck, await SinkClient.ReadAsync(socket, 4));

        const int count = 2000;
        var all = new MemoryStream();
        for (var id = 1; id <= count; id++)
        {
            all.Write(SinkClient.Publish((ushort)id, "t", $"{{\"n\":{id}}}"));
        }

        // One send of them all: the server reads them in several reads, and so answers them from several groups.
        var sending = socket.SendAsync(all.ToArray());
        var answers = await SinkClient.ReadAsync(socket, 4 * count);
        await sending;
        for (var id = 1; id <= count; id++)
        {
            Assert.Equal(SinkClient.PubAck(id), answers.AsSpan(4 * (id - 1), 4).ToArray());
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
        using var socket = await SinkClient.ConnectAsync(server.EndPoint);
        await socket.SendAsync(SinkClient.Connect);
        Assert.Equal(SinkClient.ConnAck, await SinkClient.ReadAsync(socket, 4));
        await socket.SendAsync(SinkClient.Publish(7, "t", "{}"));
        Assert.Equal(SinkClient.PubAck(7), await SinkClient.ReadAsync(socket, 4));
        Assert.Empty(Directory.GetFiles(_directory));
    }
}
