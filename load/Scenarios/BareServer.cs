using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Runtime;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>bare-server</c>: the ceiling yardstick. A Kestrel <see cref="ConnectionHandler"/> that parses only
/// the MQTT fixed header and answers CONNACK to CONNECT and PUBACK to QoS 1 PUBLISH, nothing else (no
/// validation, no auth, no storage). Whatever a real server does costs on top of this.
/// With <c>--durable DIR</c> it is the durable ceiling instead: every read's packets are appended to a file in DIR
/// (<see cref="DurableSink"/>), and the read's PUBACKs are sent only once a write-through write holding them has
/// returned (a group commit: one writer thread writes whatever the connections appended while its previous write
/// ran). That is the least a server whose every PUBACK follows a durable commit has to do in .NET; its files are
/// deleted when it stops. load/native/durable-sink.c is the same with one thread and no hand-off.
/// </summary>
public static class BareServer
{
    public const string Help = """
          bare-server    [--host 127.0.0.1] [--port 1883] [--duration 0 = until Ctrl+C]
                         [--durable DIR: PUBACK only after a write-through write of the packets to a file in DIR]
        """;

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var host = o.String("host", "127.0.0.1");
        var port = o.Int("port", 1883, 1, 65535);
        var duration = o.Duration("duration", TimeSpan.Zero);
        var durableDirectory = o.StringOrNull("durable");
        o.ThrowIfUnused();
        if (!IPAddress.TryParse(host, out var address))
        {
            throw new OptionsException($"--host: bare-server needs an IP address, got '{host}'.");
        }

        await using var server = await RunningBareServer.StartAsync(address, port, durableDirectory, cancellation);
        Console.WriteLine($"bare-server listening on {server.EndPoint} pid {Environment.ProcessId} (GC: {(GCSettings.IsServerGC ? "server" : "workstation")})"
            + (server.SinkPath is null ? "" : $", durable: PUBACK after a write-through write to {server.SinkPath}"));
        // Ends on Ctrl+C / SIGTERM (the host's lifetime), on the caller's cancellation, or after --duration.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation, server.Stopping);
        if (duration > TimeSpan.Zero)
        {
            stop.CancelAfter(duration);
        }

        try
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, stop.Token);
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }

        return 0;
    }
}

/// <summary>A started bare-server (port 0 binds a free one); disposing it stops Kestrel, then the sink.</summary>
public sealed class RunningBareServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly DurableSink? _sink;
    private int _disposed;

    private RunningBareServer(WebApplication app, DurableSink? sink, IPEndPoint endPoint)
    {
        _app = app;
        _sink = sink;
        EndPoint = endPoint;
    }

    public IPEndPoint EndPoint { get; }

    /// <summary>The durable sink's file, or null for the plain ceiling.</summary>
    public string? SinkPath => _sink?.Path;

    public CancellationToken Stopping => _app.Lifetime.ApplicationStopping;

    public static async Task<RunningBareServer> StartAsync(IPAddress address, int port, string? durableDirectory, CancellationToken cancellation,
        long segmentBytes = DurableSink.DefaultSegmentBytes)
    {
        var sink = durableDirectory is null ? null : DurableSink.Open(durableDirectory, segmentBytes);
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Services.AddSingleton(new BareSink(sink));
        builder.Logging.AddConsole().SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
            kestrel.Listen(address, port, listen => listen.UseConnectionHandler<BareMqttConnectionHandler>()));
        var app = builder.Build();
        try
        {
            await app.StartAsync(cancellation);
        }
        catch
        {
            await app.DisposeAsync();
            sink?.Dispose();
            throw;
        }

        var bound = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        return new RunningBareServer(app, sink, new IPEndPoint(address, new Uri(bound).Port));
    }

    /// <summary>Stops the server; later calls do nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _app.StopAsync(CancellationToken.None);
        await _app.DisposeAsync();
        _sink?.Dispose();
    }
}

/// <summary>The durable sink the handlers append to, or none (the plain ceiling).</summary>
public sealed record BareSink(DurableSink? Sink);

/// <summary>Answers CONNECT and QoS 1 PUBLISH; batches every answer of one read into one flush.</summary>
public sealed class BareMqttConnectionHandler(BareSink bare) : ConnectionHandler
{
    private static ReadOnlySpan<byte> ConnAckAccepted => [0x20, 0x02, 0x00, 0x00];

    public override async Task OnConnectedAsync(ConnectionContext connection)
    {
        if (bare.Sink is { } sink)
        {
            await new DurableConnection(connection, sink).RunAsync();
            return;
        }

        var input = connection.Transport.Input;
        var output = connection.Transport.Output;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync();
                var buffer = result.Buffer;
                var consumed = Answer(buffer, output, out var wrote);
                input.AdvanceTo(consumed, buffer.End);
                if (wrote)
                {
                    var flush = await output.FlushAsync();
                    if (flush.IsCompleted)
                    {
                        break;
                    }
                }

                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (IsPeerGone(e))
        {
            // Peer gone or garbage: close.
        }
    }

    internal static bool IsPeerGone(Exception e) =>
        e is ConnectionResetException or IOException or InvalidDataException or OperationCanceledException or ChannelClosedException;

    internal static SequencePosition Answer(ReadOnlySequence<byte> buffer, IBufferWriter<byte> output, out bool wrote)
    {
        wrote = false;
        var reader = new SequenceReader<byte>(buffer);
        while (true)
        {
            var start = reader.Position;
            if (!reader.TryRead(out var first) || !TryReadRemainingLength(ref reader, out var remaining) || reader.Remaining < remaining)
            {
                return start;
            }

            switch (first >> 4)
            {
                case 1:
                    Write(output, ConnAckAccepted);
                    wrote = true;
                    break;
                case 3 when (first & 0x06) == 0x02:
                    // MQTT 3.1.1 §3.3.2: topic name (2-byte length + bytes), then the packet id.
                    var packet = reader;
                    packet.TryReadBigEndian(out short topicLength);
                    packet.Advance((ushort)topicLength);
                    packet.TryReadBigEndian(out short packetId);
                    Span<byte> pubAck = [0x40, 0x02, 0, 0];
                    BinaryPrimitives.WriteInt16BigEndian(pubAck[2..], packetId);
                    Write(output, pubAck);
                    wrote = true;
                    break;
                default:
                    break;
            }

            reader.Advance(remaining);
        }
    }

    private static bool TryReadRemainingLength(ref SequenceReader<byte> reader, out int remaining)
    {
        remaining = 0;
        for (int i = 0, multiplier = 1; i < 4; i++, multiplier *= 128)
        {
            if (!reader.TryRead(out var b))
            {
                return false;
            }

            remaining += (b & 0x7F) * multiplier;
            if ((b & 0x80) == 0)
            {
                return true;
            }
        }

        throw new InvalidDataException("Malformed remaining length.");
    }

    private static void Write(IBufferWriter<byte> output, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(output.GetSpan(bytes.Length));
        output.Advance(bytes.Length);
    }
}

/// <summary>
/// One connection of the durable ceiling: the read loop appends each read's packets to the sink and queues its
/// answers with the group's task; the answer loop sends them in order once each group is on the disk. Reading goes
/// on while earlier groups are written, as in a server whose acknowledgements are pumped apart from its reads.
/// </summary>
internal sealed class DurableConnection(ConnectionContext connection, DurableSink sink)
{
    private readonly Channel<(Task Durable, ArrayBufferWriter<byte> Answers)> _pending =
        Channel.CreateUnbounded<(Task, ArrayBufferWriter<byte>)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    private readonly ConcurrentQueue<ArrayBufferWriter<byte>> _spare = new();

    public async Task RunAsync()
    {
        var answering = AnswerAsync();
        var input = connection.Transport.Input;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync();
                var buffer = result.Buffer;
                if (!_spare.TryDequeue(out var answers))
                {
                    answers = new ArrayBufferWriter<byte>(256);
                }

                var consumed = BareMqttConnectionHandler.Answer(buffer, answers, out var wrote);
                if (wrote)
                {
                    _pending.Writer.TryWrite((sink.AppendAsync(buffer.Slice(buffer.Start, consumed)), answers));
                }
                else
                {
                    _spare.Enqueue(answers);
                }

                input.AdvanceTo(consumed, buffer.End);
                if (result.IsCompleted || answering.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (BareMqttConnectionHandler.IsPeerGone(e))
        {
            // Peer gone or garbage: close.
        }

        _pending.Writer.TryComplete();
        await answering;
    }

    private async Task AnswerAsync()
    {
        var output = connection.Transport.Output;
        var reader = _pending.Reader;
        try
        {
            while (await reader.WaitToReadAsync())
            {
                // Every group already on the disk goes out in one flush.
                while (reader.TryPeek(out var next) && (next.Durable.IsCompleted || output.UnflushedBytes == 0))
                {
                    reader.TryRead(out next);
                    await next.Durable;
                    output.Write(next.Answers.WrittenSpan);
                    next.Answers.ResetWrittenCount();
                    _spare.Enqueue(next.Answers);
                }

                if ((await output.FlushAsync()).IsCompleted)
                {
                    return;
                }
            }
        }
        catch (Exception e) when (BareMqttConnectionHandler.IsPeerGone(e))
        {
            // Peer gone, or the sink's write failed: close without the answers.
            connection.Abort();
        }
    }
}

/// <summary>
/// A group commit over a file opened write-through (<c>O_SYNC</c>, as the uplink log's segments are): connections
/// append under a lock, and one writer thread writes all that was appended while its previous write ran, then
/// completes that group's task. Two buffers swap, so appending never waits for the disk. Like the log, it appends
/// to segments of 1 GiB: a full one is deleted in the background once the next one is open, so a long run does not
/// fill the disk.
/// </summary>
public sealed class DurableSink : IDisposable
{
    public const long DefaultSegmentBytes = 1L << 30;
    private readonly object _gate = new();
    private readonly string _directory;
    private readonly long _segmentBytes;
    private readonly Thread _writer;
    private Task _deletes = Task.CompletedTask;
    private SafeFileHandle _file;
    private int _segment;
    private byte[] _filling = new byte[1 << 20];
    private byte[] _writing = new byte[1 << 20];
    private int _filled;
    private TaskCompletionSource _group = NewGroup();
    private bool _writerWaiting;
    private bool _stopping;

    private DurableSink(string directory, long segmentBytes)
    {
        _directory = directory;
        _segmentBytes = segmentBytes;
        _file = OpenSegment(0);
        _writer = new Thread(WriteGroups) { IsBackground = true, Name = "durable-sink writer" };
        _writer.Start();
    }

    /// <summary>The segment being written.</summary>
    public string Path => SegmentPath(Volatile.Read(ref _segment));

    public static DurableSink Open(string directory, long segmentBytes = DefaultSegmentBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(segmentBytes);
        Directory.CreateDirectory(directory);
        return new DurableSink(directory, segmentBytes);
    }

    private string SegmentPath(int segment) => System.IO.Path.Combine(_directory, $"bare-sink-{Environment.ProcessId}.{segment}.log");

    private SafeFileHandle OpenSegment(int segment) =>
        File.OpenHandle(SegmentPath(segment), FileMode.CreateNew, FileAccess.Write, FileShare.Read | FileShare.Delete, FileOptions.WriteThrough);

    /// <summary>Copies <paramref name="packets"/> into the current group; completes once a write holding them returned.</summary>
    public Task AppendAsync(ReadOnlySequence<byte> packets)
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            var length = checked((int)packets.Length);
            if (_filled + length > _filling.Length)
            {
                Array.Resize(ref _filling, Math.Max(_filling.Length * 2, _filled + length));
            }

            packets.CopyTo(_filling.AsSpan(_filled));
            _filled += length;
            if (_writerWaiting)
            {
                _writerWaiting = false;
                Monitor.Pulse(_gate);
            }

            return _group.Task;
        }
    }

    private void WriteGroups()
    {
        long offset = 0;
        while (true)
        {
            TaskCompletionSource group;
            int length;
            lock (_gate)
            {
                while (_filled == 0 && !_stopping)
                {
                    _writerWaiting = true;
                    Monitor.Wait(_gate);
                }

                if (_filled == 0)
                {
                    return;
                }

                (_filling, _writing) = (_writing, _filling);
                length = _filled;
                _filled = 0;
                group = _group;
                _group = NewGroup();
            }

            try
            {
                if (offset > 0 && offset + length > _segmentBytes)
                {
                    var full = SegmentPath(_segment);
                    var next = OpenSegment(_segment + 1);
                    _file.Dispose();
                    (_file, offset) = (next, 0);
                    Volatile.Write(ref _segment, _segment + 1);
                    _deletes = Task.WhenAll(_deletes, Task.Run(() => File.Delete(full)));
                }

                RandomAccess.Write(_file, _writing.AsSpan(0, length), offset);
                offset += length;
                group.SetResult();
            }
            catch (IOException e)
            {
                group.SetException(e);
            }
        }
    }

    private static TaskCompletionSource NewGroup() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            Monitor.Pulse(_gate);
        }

        _writer.Join();
        _file.Dispose();
        File.Delete(Path);
        _deletes.GetAwaiter().GetResult();
    }
}
