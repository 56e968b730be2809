using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Perf.Core;
using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Kestrel.Mqtt.Tests;

/// <summary>
/// The lean writer's swap-buffer flush (commit under the caller's lock, send outside it), over real
/// loopback sockets: ordering under concurrent writers, the MQTT door's output cap, and close while flushing.
/// </summary>
public sealed class LeanSocketWriterTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private IConnectionListenerHolder _holder = null!;

    public Task InitializeAsync()
    {
        _holder = new IConnectionListenerHolder();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _holder.DisposeAsync();

    [Fact]
    public async Task CommitAsync_QueuesWithoutSending_AndSendCommittedSends()
    {
        var (client, server) = await _holder.ConnectAsync(64 * 1024);
        var writer = server.Writer;
        writer.Write("hello"u8);
        var commit = writer.CommitAsync();
        Assert.True(commit.IsCompletedSuccessfully);
        Assert.Equal(0, writer.UnflushedBytes);
        Assert.Equal(5, writer.Unsent);

        // Nothing was sent by the commit: the peer has nothing to read.
        Assert.Equal(0, client.Available);

        writer.SendCommitted();
        Assert.Equal(0, writer.Unsent);
        Assert.Equal("hello", await ReceiveTextAsync(client, 5));
        Assert.False(writer.HoldsBuffer);
    }

    /// <summary>
    /// Sends the kernel takes at once are plain non-blocking send(2)s on the descriptor: no <see cref="Socket"/> is made
    /// for the connection (about 0.1 KB, and its awaitable send event args about 0.3 KB more, kept for the connection's
    /// life, on every connection that was ever sent a CONNACK); a peer that stops reading still gets everything once it
    /// reads again (the EAGAIN path makes the socket and goes on with SendAsync).
    /// </summary>
    [Fact]
    public async Task SendsTheKernelTakes_MakeNoSocket_AndABackedUpSocketStillDrains()
    {
        var (client, server) = await _holder.ConnectAsync(1024 * 1024, clientReceiveBuffer: 4096);
        var writer = server.Writer;
        for (int i = 0; i < 10; i++)
        {
            writer.Write("0123456789"u8);
            await writer.FlushAsync();
        }

        Assert.Equal(string.Concat(Enumerable.Repeat("0123456789", 10)), await ReceiveTextAsync(client, 100));
        Assert.False(server.HasSocket);

        // 6 MiB at once against a 4 KiB receive buffer (loopback send buffers grow to 4 MiB): the kernel takes part,
        // the rest waits for the reader.
        var big = new byte[6 * 1024 * 1024];
        big.AsSpan().Fill((byte)'b');
        writer.Write(big);
        var flush = writer.FlushAsync().AsTask();
        var received = await ReceiveTextAsync(client, big.Length);
        await flush.WaitAsync(Deadline);
        Assert.Equal(big.Length, received.Length);
        Assert.All(received, c => Assert.Equal('b', c));
        Assert.True(server.HasSocket);
    }

    /// <summary>
    /// The path every MQTT downlink and PUBACK takes on the lean transport (write, commit, send outside the
    /// lock) allocates nothing per message once warm: the writer's buffer and the queue are pooled, the
    /// commit's result is a struct, and the socket's synchronous send completes without a task.
    /// </summary>
    [Fact]
    public async Task WriteCommitSend_AllocatesNothingPerMessage()
    {
        const int messages = 20_000;
        var (client, server) = await _holder.ConnectAsync(64 * 1024);
        var writer = server.Writer;
        var drain = Task.Run(async () =>
        {
            var buffer = new byte[64 * 1024];
            long total = 0;
            while (total < (messages + 1_000) * 64L)
            {
                int n = await client.ReceiveAsync(buffer.AsMemory(), SocketFlags.None);
                Assert.NotEqual(0, n);
                total += n;
            }
        });

        var gate = new Lock();
        void Send()
        {
            ValueTask<System.IO.Pipelines.FlushResult> commit;
            lock (gate)
            {
                writer.GetSpan(64)[..64].Fill(0x30);
                writer.Advance(64);
                commit = writer.CommitAsync();
            }

            writer.SendCommitted();
            Assert.True(commit.IsCompletedSuccessfully);
        }

        for (int i = 0; i < 1_000; i++)
        {
            Send();
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < messages; i++)
        {
            Send();
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        await drain.WaitAsync(Deadline);
        // Less than a byte per message (a rare pool miss or a socket-internal allocation may show once).
        Assert.True(allocated < messages, $"{allocated} bytes for {messages} messages");
    }

    /// <summary>
    /// Eight threads write numbered frames under one lock (as REST threads and the read loop share the MQTT
    /// write lock), commit under it and send outside it, racing each other to be the sender. Every frame
    /// arrives whole, once, and each thread's frames in the order it wrote them.
    /// </summary>
    [Fact]
    public async Task ConcurrentWriters_CommitUnderLock_SendOutside_EveryFrameArrivesInWriterOrder()
    {
        const int writers = 8;
        const int framesPerWriter = 20_000;
        const int frameSize = 16;
        // No backpressure in this test: a commit never waits, so any thread may commit (the MQTT door has one
        // flusher at a time; this is the harder case for the writer).
        var (client, server) = await _holder.ConnectAsync(64 * 1024 * 1024);
        var writer = server.Writer;
        var gate = new Lock();
        var received = Task.Run(() => ReceiveFramesAsync(client, writers, framesPerWriter, frameSize));

        using var start = new Barrier(writers);
        var threads = Enumerable.Range(0, writers).Select(w => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            for (int i = 0; i < framesPerWriter; i++)
            {
                lock (gate)
                {
                    var span = writer.GetSpan(frameSize);
                    BinaryPrimitives.WriteInt32BigEndian(span, w);
                    BinaryPrimitives.WriteInt32BigEndian(span[4..], i);
                    span[8..frameSize].Fill((byte)(w + i));
                    writer.Advance(frameSize);
                    var commit = writer.CommitAsync();
                    Assert.True(commit.IsCompletedSuccessfully && !commit.Result.IsCompleted);
                }

                writer.SendCommitted();
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();

        await Task.WhenAll(threads).WaitAsync(Deadline);
        var counts = await received.WaitAsync(Deadline);
        Assert.All(counts, c => Assert.Equal(framesPerWriter, c));
        await WaitUntilAsync(() => writer.Unsent == 0 && !writer.HoldsBuffer, "the writer kept unsent bytes or a buffer");
    }

    /// <summary>
    /// The MQTT door on the lean transport: RPC requests pushed from many threads (as concurrent REST calls
    /// do) all reach the device, in each pushing thread's order.
    /// </summary>
    [Fact]
    public async Task MqttPushesFromManyThreads_AllReachTheDevice_InEachThreadsOrder()
    {
        const int threads = 6;
        const int perThread = 2_000;
        await using var door = await MqttDoor.StartAsync(_holder, new MqttOptions());
        var session = await door.ConnectSubscriberAsync();

        // Request ids encode the thread (high part) and its sequence (low part).
        var reading = Task.Run(() => ReadRpcRequestsAsync(door.Client, threads * perThread));
        using var start = new Barrier(threads);
        var pushers = Enumerable.Range(0, threads).Select(t => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            for (int i = 0; i < perThread; i++)
            {
                Assert.True(session.PushRpcRequest(Request(((t + 1) * 100_000) + i, "{}")));
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();

        await Task.WhenAll(pushers).WaitAsync(Deadline);
        var ids = await reading.WaitAsync(Deadline);
        Assert.Equal(threads * perThread, ids.Count);
        for (int t = 0; t < threads; t++)
        {
            var mine = ids.Where(id => id / 100_000 == t + 1).Select(id => id % 100_000).ToList();
            Assert.Equal(Enumerable.Range(0, perThread), mine);
        }
    }

    /// <summary>
    /// A device that stops reading while several threads push 8 KiB RPC requests to it: the socket buffers
    /// and the writer's queue fill, then the 1 MiB output cap closes the connection; pushes are refused
    /// from then on instead of buffering without bound, and the writer returns its buffers.
    /// </summary>
    [Fact]
    public async Task MqttDeviceThatStopsReading_IsClosedAtTheOutputCap_WhilePushesComeFromManyThreads()
    {
        var options = new MqttOptions();
        await using var door = await MqttDoor.StartAsync(_holder, options, clientReceiveBuffer: 4096);
        var session = await door.ConnectSubscriberAsync();
        var bigParams = "{\"blob\":\"" + new string('x', 8 * 1024) + "\"}";
        long accepted = 0;
        int nextId = 0;
        using var start = new Barrier(4);
        var pushers = Enumerable.Range(0, 4).Select(_ => Task.Factory.StartNew(() =>
        {
            start.SignalAndWait();
            while (session.PushRpcRequest(Request(Interlocked.Increment(ref nextId), bigParams)))
            {
                Interlocked.Increment(ref accepted);
                Assert.True(Interlocked.Read(ref accepted) < 100_000, "the output was never capped");
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();

        await Task.WhenAll(pushers).WaitAsync(Deadline);
        await door.Running.WaitAsync(Deadline);

        // What got in is bounded by the cap plus the socket buffers (a few MiB on loopback), not by the pushes.
        long acceptedBytes = accepted * bigParams.Length;
        Assert.True(acceptedBytes > options.MaxOutputBufferSize, $"closed after only {acceptedBytes} bytes");
        Assert.True(acceptedBytes < options.MaxOutputBufferSize + (64L << 20), $"{acceptedBytes} bytes accepted");
        Assert.False(session.PushRpcRequest(Request(1, "{}")));
        await WaitUntilAsync(() => !door.Server.Writer.HoldsBuffer, "the writer kept a buffer after the close");
    }

    /// <summary>
    /// Close while flushing: one thread keeps committing and sending to a slow reader (the send loop runs,
    /// bytes queue behind it) when another completes the writer and disposes the connection. The peer gets
    /// a prefix of the stream, in order, then the end; nothing throws and the writer holds no buffer.
    /// </summary>
    [Fact]
    public async Task CloseWhileFlushing_PeerGetsAnOrderedPrefixThenTheEnd_NoBufferKept()
    {
        var (client, server) = await _holder.ConnectAsync(256 * 1024);
        var writer = server.Writer;
        var gate = new Lock();
        long written = 0;
        bool closed = false;
        var firstLoop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var producer = Task.Factory.StartNew(() =>
        {
            while (true)
            {
                ValueTask<System.IO.Pipelines.FlushResult> commit;
                lock (gate)
                {
                    if (closed)
                    {
                        return;
                    }

                    var span = writer.GetSpan(4096)[..4096];
                    for (int i = 0; i < span.Length; i++)
                    {
                        span[i] = (byte)((written + i) % 251);
                    }

                    writer.Advance(span.Length);
                    written += span.Length;
                    commit = writer.CommitAsync();
                }

                writer.SendCommitted();
                if (writer.Unsent > 0)
                {
                    firstLoop.TrySetResult();
                }

                if (!commit.IsCompleted)
                {
                    // Backpressure: wait for the loop (or the close) as the MQTT door's flusher does.
                    var result = commit.AsTask().GetAwaiter().GetResult();
                    if (result.IsCompleted)
                    {
                        return;
                    }
                }
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        // Read slowly until the server's sends are behind (its send loop is running), then close mid-stream.
        var received = new MemoryStream();
        var buffer = new byte[1024];
        while (!firstLoop.Task.IsCompleted)
        {
            int n = await client.ReceiveAsync(buffer.AsMemory(), SocketFlags.None).AsTask().WaitAsync(Deadline);
            Assert.NotEqual(0, n);
            received.Write(buffer, 0, n);
        }

        lock (gate)
        {
            closed = true;
            writer.Complete();
        }

        var dispose = server.DisposeAsync().AsTask();
        buffer = new byte[64 * 1024];
        try
        {
            while (true)
            {
                int n = await client.ReceiveAsync(buffer.AsMemory(), SocketFlags.None).AsTask().WaitAsync(Deadline);
                if (n == 0)
                {
                    break;
                }

                received.Write(buffer, 0, n);
            }
        }
        catch (SocketException)
        {
            // A reset after the bounded wait is also an end; the bytes before it are still checked.
        }

        await dispose.WaitAsync(Deadline);
        await producer.WaitAsync(Deadline);
        var bytes = received.ToArray();
        Assert.True(bytes.Length > 0 && bytes.Length <= written, $"received {bytes.Length} of {written}");
        for (int i = 0; i < bytes.Length; i++)
        {
            if (bytes[i] != (byte)(i % 251))
            {
                Assert.Fail($"byte {i} out of order");
            }
        }

        // Everything committed before the close reached the peer (the peer kept reading).
        Assert.Equal(written, bytes.Length);
        Assert.False(writer.HoldsBuffer);
    }

    private static RpcRequest Request(int id, string paramsJson) =>
        new(id, Guid.NewGuid(), "echo", paramsJson, OneWay: false, ExpirationTime: long.MaxValue, Persistent: false);

    private static async Task<string> ReceiveTextAsync(Socket client, int count)
    {
        var buffer = new byte[count];
        int at = 0;
        while (at < count)
        {
            int n = await client.ReceiveAsync(buffer.AsMemory(at)).AsTask().WaitAsync(Deadline);
            Assert.NotEqual(0, n);
            at += n;
        }

        return Encoding.ASCII.GetString(buffer);
    }

    /// <summary>Reads frames (writer, sequence, filler) and checks each writer's sequence; returns the frames per writer.</summary>
    private static async Task<int[]> ReceiveFramesAsync(Socket client, int writers, int framesPerWriter, int frameSize)
    {
        var next = new int[writers];
        var buffer = new byte[64 * 1024];
        int filled = 0;
        long total = (long)writers * framesPerWriter;
        long seen = 0;
        while (seen < total)
        {
            int n = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None);
            Assert.NotEqual(0, n);
            filled += n;
            int at = 0;
            for (; filled - at >= frameSize; at += frameSize)
            {
                var frame = buffer.AsSpan(at, frameSize);
                int w = BinaryPrimitives.ReadInt32BigEndian(frame);
                int i = BinaryPrimitives.ReadInt32BigEndian(frame[4..]);
                Assert.InRange(w, 0, writers - 1);
                Assert.Equal(next[w], i);
                Assert.True(frame[8..].IndexOfAnyExcept((byte)(w + i)) < 0, $"frame {w}/{i} torn");
                next[w]++;
                seen++;
            }

            filled -= at;
            buffer.AsSpan(at, filled).CopyTo(buffer);
        }

        return next;
    }

    /// <summary>Reads PUBLISH packets on the RPC request topic until <paramref name="count"/>; returns their request ids in arrival order.</summary>
    private static async Task<List<int>> ReadRpcRequestsAsync(Socket client, int count)
    {
        var ids = new List<int>(count);
        var buffer = new byte[256 * 1024];
        int filled = 0;
        while (ids.Count < count)
        {
            int n = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None);
            Assert.NotEqual(0, n);
            filled += n;
            var sequence = new ReadOnlySequence<byte>(buffer, 0, filled);
            var reader = new SequenceReader<byte>(sequence);
            while (MqttPacketReader.TryRead(ref reader, 1 << 20, out var packet))
            {
                if (packet.Type == MqttPacketType.Publish)
                {
                    var topic = Encoding.UTF8.GetString(packet.Topic);
                    Assert.StartsWith("v1/devices/me/rpc/request/", topic);
                    ids.Add(int.Parse(topic.AsSpan("v1/devices/me/rpc/request/".Length), System.Globalization.CultureInfo.InvariantCulture));
                }
            }

            int consumed = (int)reader.Consumed;
            filled -= consumed;
            buffer.AsSpan(consumed, filled).CopyTo(buffer);
        }

        return ids;
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string failure)
    {
        var deadline = DateTime.UtcNow + Deadline;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, failure);
            await Task.Delay(10);
        }
    }

    /// <summary>Lean listeners and the sockets of one test, disposed together.</summary>
    internal sealed class IConnectionListenerHolder : IAsyncDisposable
    {
        private readonly List<IAsyncDisposable> _owned = [];
        private readonly List<Socket> _sockets = [];

        public async Task<(Socket Client, LeanSocketConnection Server)> ConnectAsync(int maxUnsent, int clientReceiveBuffer = 0)
        {
            var factory = new LeanSocketTransportFactory(new LeanSocketTransportOptions { MaxUnsentBytes = maxUnsent }, NullLoggerFactory.Instance);
            var listener = await factory.BindAsync(new LeanEndPoint(IPAddress.Loopback, 0));
            _owned.Add(listener);
            var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            if (clientReceiveBuffer > 0)
            {
                client.ReceiveBufferSize = clientReceiveBuffer;
            }

            _sockets.Add(client);
            var accept = listener.AcceptAsync().AsTask();
            await client.ConnectAsync(listener.EndPoint);
            var server = (LeanSocketConnection)(await accept.WaitAsync(Deadline))!;
            _owned.Add(server);
            return (client, server);
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }

            foreach (var owned in _owned)
            {
                await owned.DisposeAsync();
            }
        }
    }

    /// <summary>The MQTT door's handler running on one lean connection, with a raw-socket device on the other end.</summary>
    private sealed class MqttDoor : IAsyncDisposable
    {
        private MqttDoor(Socket client, LeanSocketConnection server, FakeSessionTable sessions, Task running)
        {
            Client = client;
            Server = server;
            Sessions = sessions;
            Running = running;
        }

        public Socket Client { get; }
        public LeanSocketConnection Server { get; }
        public FakeSessionTable Sessions { get; }
        public Task Running { get; }

        public static async Task<MqttDoor> StartAsync(IConnectionListenerHolder holder, MqttOptions options, int clientReceiveBuffer = 0)
        {
            var (client, server) = await holder.ConnectAsync(64 * 1024, clientReceiveBuffer);
            var sessions = new FakeSessionTable();
            var handler = new MqttConnectionHandler(new FakeDeviceApi(), sessions, Options.Create(options), NullLogger<MqttConnectionHandler>.Instance);
            var running = Task.Run(() => handler.OnConnectedAsync(server));
            return new MqttDoor(client, server, sessions, running);
        }

        /// <summary>CONNECT as the sensor, SUBSCRIBE to RPC requests (QoS 0); returns the registered session.</summary>
        public async Task<IDeviceSession> ConnectSubscriberAsync()
        {
            var packets = new ArrayBufferWriter<byte>();
            MqttPacketWriter.WriteConnect(packets, "client", "good", keepAliveSeconds: 60);
            await Client.SendAsync(packets.WrittenMemory);
            Assert.Equal(0, (await ReceiveExactlyAsync(4))[3]);
            packets.Clear();
            MqttPacketWriter.WriteSubscribe(packets, 1, [new("v1/devices/me/rpc/request/+", 0)]);
            await Client.SendAsync(packets.WrittenMemory);
            await ReceiveExactlyAsync(5);
            var session = Assert.Single(Sessions.Sessions);
            Assert.True(session.WantsRpc);
            return session;
        }

        private async Task<byte[]> ReceiveExactlyAsync(int count)
        {
            var bytes = new byte[count];
            int at = 0;
            while (at < count)
            {
                int n = await Client.ReceiveAsync(bytes.AsMemory(at)).AsTask().WaitAsync(Deadline);
                Assert.NotEqual(0, n);
                at += n;
            }

            return bytes;
        }

        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            await Running.WaitAsync(Deadline);
        }
    }
}
