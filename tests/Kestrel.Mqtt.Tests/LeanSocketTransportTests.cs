using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging.Abstractions;
using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Kestrel.Mqtt.Tests;

/// <summary>The lean socket transport's pipe semantics, over real loopback sockets.</summary>
public sealed class LeanSocketTransportTests : IAsyncLifetime
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private IConnectionListener _listener = null!;
    private Socket _client = null!;
    private LeanSocketConnection _server = null!;

    private PipeReader Input => _server.Transport.Input;
    private PipeWriter Output => _server.Transport.Output;

    public async Task InitializeAsync() => await ConnectAsync(64 * 1024);

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _server.DisposeAsync();
        await _listener.DisposeAsync();
    }

    /// <summary>
    /// What the listener's descriptor water mark reads: the soft open-file limit, as /proc/self/limits says, and the
    /// number the kernel gives next (the lowest free one), which the listener compares with the limit.
    /// </summary>
    [Fact]
    public void DescriptorLimit_IsTheSoftLimit_AndLowestFreeDescriptor_IsTheNumberTheNextOpenGets()
    {
        var line = File.ReadAllLines("/proc/self/limits").Single(l => l.StartsWith("Max open files", StringComparison.Ordinal));
        var soft = line["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
        Assert.Equal(soft == "unlimited" ? int.MaxValue : int.Parse(soft, System.Globalization.CultureInfo.InvariantCulture), LeanSocketHandle.DescriptorLimit());

        // Other tests open and close sockets meanwhile, so a few attempts: the numbers must agree when nothing came between.
        bool agreed = false;
        for (int attempt = 0; attempt < 20 && !agreed; attempt++)
        {
            int free = LeanSocketHandle.LowestFreeDescriptor();
            Assert.True(free > 2, $"lowest free descriptor {free}");
            using var opened = File.OpenHandle("/dev/null");
            agreed = free == (int)opened.DangerousGetHandle() && LeanSocketHandle.LowestFreeDescriptor() != free;
        }

        Assert.True(agreed, "the lowest free descriptor never matched the number an open got");
    }

    [Fact]
    public void Factory_BindsOnlyLeanEndPoints()
    {
        var factory = new LeanSocketTransportFactory(new LeanSocketTransportOptions(), NullLoggerFactory.Instance);
        Assert.True(factory.CanBind(new LeanEndPoint(IPAddress.Loopback, 0)));
        Assert.False(factory.CanBind(new IPEndPoint(IPAddress.Loopback, 0)));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AcceptedSockets_HaveTheConfiguredNoDelay(bool noDelay)
    {
        var factory = new LeanSocketTransportFactory(new LeanSocketTransportOptions { NoDelay = noDelay }, NullLoggerFactory.Instance);
        await using var listener = await factory.BindAsync(new LeanEndPoint(IPAddress.Loopback, 0));
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accept = listener.AcceptAsync().AsTask();
        await client.ConnectAsync(listener.EndPoint);
        await using var server = (LeanSocketConnection)(await accept.WaitAsync(Deadline))!;
        Assert.Equal(noDelay, server.Socket.NoDelay); // read back from the kernel (getsockopt)
    }

    /// <summary>
    /// Connections are taken with accept4 on the epoll thread's signal: an accept waiting on an empty backlog wakes for
    /// the next connection, a burst of connections (edge-triggered: fewer edges than connections) is accepted whole, and
    /// each connection knows both its ends without a <see cref="Socket"/> object.
    /// </summary>
    [Fact]
    public async Task Listener_AcceptsEachConnectionOfABurst_AndAWaitingAcceptWakesForTheNext()
    {
        var factory = new LeanSocketTransportFactory(new LeanSocketTransportOptions(), NullLoggerFactory.Instance);
        await using var listener = await factory.BindAsync(new LeanEndPoint(IPAddress.Loopback, 0));

        // A waiting accept (the backlog is empty), woken by one connection.
        var waiting = listener.AcceptAsync().AsTask();
        Assert.NotSame(waiting, await Task.WhenAny(waiting, Task.Delay(200)));
        using var first = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await first.ConnectAsync(listener.EndPoint);
        var accepted = (LeanSocketConnection)(await waiting.WaitAsync(Deadline))!;
        Assert.Equal(first.LocalEndPoint, accepted.RemoteEndPoint);
        Assert.Equal(first.RemoteEndPoint, accepted.LocalEndPoint);
        Assert.False(accepted.HasSocket);
        await accepted.DisposeAsync();
        Assert.Throws<ObjectDisposedException>(() => accepted.Socket); // none is made for a closed connection
        Assert.Equal(0, await first.ReceiveAsync(new byte[1], SocketFlags.None).WaitAsync(Deadline));

        // A burst queued before any accept runs: every one is accepted, each with its own peer.
        var clients = new List<Socket>();
        try
        {
            for (int i = 0; i < 50; i++)
            {
                var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                clients.Add(client);
                await client.ConnectAsync(listener.EndPoint);
            }

            var peers = new HashSet<EndPoint>();
            for (int i = 0; i < clients.Count; i++)
            {
                await using var next = (LeanSocketConnection)(await listener.AcceptAsync().AsTask().WaitAsync(Deadline))!;
                Assert.True(peers.Add(next.RemoteEndPoint!));
            }

            Assert.True(peers.SetEquals(clients.Select(c => c.LocalEndPoint!)));
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }

    /// <summary>Unbinding ends an accept that is waiting (null, as Kestrel expects), and later accepts return null at once.</summary>
    [Fact]
    public async Task Unbind_EndsAWaitingAccept_WithNull()
    {
        var factory = new LeanSocketTransportFactory(new LeanSocketTransportOptions(), NullLoggerFactory.Instance);
        var listener = await factory.BindAsync(new LeanEndPoint(IPAddress.Loopback, 0));
        var waiting = listener.AcceptAsync().AsTask();
        Assert.NotSame(waiting, await Task.WhenAny(waiting, Task.Delay(200)));
        await listener.UnbindAsync();
        Assert.Null(await waiting.WaitAsync(Deadline));
        Assert.Null(await listener.AcceptAsync().AsTask().WaitAsync(Deadline));
        await listener.DisposeAsync();
    }

    /// <summary>A listener on every address reports each connection's own local address (read from the socket once, shared by the connections on that address).</summary>
    [Fact]
    public async Task WildcardListener_ReportsTheConnectionsOwnLocalAddress()
    {
        var factory = new LeanSocketTransportFactory(new LeanSocketTransportOptions(), NullLoggerFactory.Instance);
        await using var listener = await factory.BindAsync(new LeanEndPoint(IPAddress.Any, 0));
        int port = ((IPEndPoint)listener.EndPoint).Port;
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accept = listener.AcceptAsync().AsTask();
        await client.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        await using var server = (LeanSocketConnection)(await accept.WaitAsync(Deadline))!;
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, port), server.LocalEndPoint);
        Assert.Equal(client.LocalEndPoint, server.RemoteEndPoint);

        // Read once, then kept; a second connection on the same address shares the same endpoint object.
        Assert.Same(server.LocalEndPoint, server.LocalEndPoint);
        using var second = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var acceptSecond = listener.AcceptAsync().AsTask();
        await second.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        await using var secondServer = (LeanSocketConnection)(await acceptSecond.WaitAsync(Deadline))!;
        Assert.Same(server.LocalEndPoint, secondServer.LocalEndPoint);
    }

    /// <summary>
    /// Closing the connection closes its descriptor gracefully: bytes written before the close reach the peer, then the
    /// FIN (no reset). The socket made for the socket feature is closed with it.
    /// </summary>
    [Fact]
    public async Task Dispose_SendsWhatWasWritten_ThenTheFin_AndClosesTheFeaturesSocket()
    {
        var socket = _server.Socket;
        await WriteAsync("bye"u8.ToArray());
        await _server.DisposeAsync();
        var received = new byte[16];
        int total = 0;
        while (true)
        {
            int n = await _client.ReceiveAsync(received.AsMemory(total), SocketFlags.None).AsTask().WaitAsync(Deadline);
            if (n == 0)
            {
                break;
            }

            total += n;
        }

        Assert.Equal("bye", System.Text.Encoding.ASCII.GetString(received, 0, total));
        Assert.Throws<ObjectDisposedException>(() => socket.Available);
    }

    /// <summary>
    /// The end callback (the connection gate's quota) runs once, when the connection is disposed; a second one is refused,
    /// and so is one set after the dispose. Overridden values (a TLS middleware's transport, an id) are kept and read back.
    /// </summary>
    [Fact]
    public async Task EndCallback_RunsOnceAtDispose_AndOverridesAreKept()
    {
        var end = Assert.IsAssignableFrom<ILeanConnectionEndFeature>(_server.Features.Get<ILeanConnectionEndFeature>());
        int ran = 0;
        object? seen = null;
        var state = new object();
        Assert.True(end.TryOnEnd(s => { ran++; seen = s; }, state));
        Assert.False(end.TryOnEnd(_ => ran += 100, state));

        var pipe = new Pipe();
        var transport = new DuplexPipe(pipe.Reader, pipe.Writer);
        _server.Transport = transport;
        _server.ConnectionId = "override-id";
        Assert.Same(transport, _server.Transport);
        Assert.Equal("override-id", _server.ConnectionId);
        _server.Transport = _server; // back to its own pipe, so the fixture's dispose closes it as usual

        Assert.Equal(0, ran);
        await _server.DisposeAsync();
        await _server.DisposeAsync();
        Assert.Equal(1, ran);
        Assert.Same(state, seen);
        Assert.False(end.TryOnEnd(_ => ran += 100, state));
        Assert.Equal(1, ran);
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    [Fact]
    public async Task PartialConsumption_KeepsTheRestForTheNextRead()
    {
        await SendAsync("abcdef");
        var result = await ReadAtLeastAsync(6);
        Input.AdvanceTo(result.Buffer.GetPosition(2), result.Buffer.End);

        await SendAsync("gh");
        result = await ReadAtLeastAsync(6);
        Assert.Equal("cdefgh", Text(result.Buffer));
        Input.AdvanceTo(result.Buffer.End);
    }

    [Fact]
    public async Task ExaminedWithoutConsumed_WaitsForMoreData()
    {
        await SendAsync("ab");
        var result = await ReadAtLeastAsync(2);
        Input.AdvanceTo(result.Buffer.Start, result.Buffer.End);

        var next = Input.ReadAsync().AsTask();
        Assert.NotSame(next, await Task.WhenAny(next, Task.Delay(300)));

        await SendAsync("c");
        result = await next.WaitAsync(Deadline);
        Assert.Equal("abc", Text(result.Buffer));
        Input.AdvanceTo(result.Buffer.End);
    }

    [Fact]
    public async Task ExaminedLessThanEnd_ReturnsAtOnce()
    {
        await SendAsync("abcd");
        var result = await ReadAtLeastAsync(4);
        Input.AdvanceTo(result.Buffer.Start, result.Buffer.GetPosition(2));

        var again = Input.ReadAsync();
        Assert.True(again.IsCompleted);
        var result2 = await again;
        Assert.Equal("abcd", Text(result2.Buffer));
        Input.AdvanceTo(result2.Buffer.End);
    }

    [Fact]
    public async Task OneByteSegments_AccumulateUntilTheFrameIsComplete()
    {
        var expected = new byte[300];
        Random.Shared.NextBytes(expected);
        var sender = Task.Run(async () =>
        {
            for (int i = 0; i < expected.Length; i++)
            {
                await _client.SendAsync(expected.AsMemory(i, 1));
            }
        });

        var result = await ReadAtLeastAsync(expected.Length);
        Assert.Equal(expected, result.Buffer.ToArray());
        Input.AdvanceTo(result.Buffer.End);
        await sender;
    }

    [Fact]
    public async Task LargeMessage_SpanningManyBuffers_ArrivesWhole()
    {
        var expected = new byte[3 * 1024 * 1024 + 17];
        Random.Shared.NextBytes(expected);
        var sender = Task.Run(async () => await _client.SendAsync(expected));

        var result = await ReadAtLeastAsync(expected.Length);
        Assert.True(result.Buffer.ToArray().AsSpan().SequenceEqual(expected));
        Input.AdvanceTo(result.Buffer.End);
        await sender;
        Assert.False(_server.Reader.HoldsBuffer);
    }

    [Fact]
    public async Task PeerFin_CompletesTheReader_AndFiresConnectionClosed()
    {
        var closed = new TaskCompletionSource();
        using var registration = _server.ConnectionClosed.Register(() => closed.TrySetResult());
        await SendAsync("xy");
        _client.Shutdown(SocketShutdown.Send);

        var result = await ReadAtLeastAsync(2, untilCompleted: true);
        Assert.True(result.IsCompleted);
        Assert.Equal("xy", Text(result.Buffer));
        Input.AdvanceTo(result.Buffer.End);

        result = await Input.ReadAsync().AsTask().WaitAsync(Deadline);
        Assert.True(result.IsCompleted);
        Assert.True(result.Buffer.IsEmpty);
        await closed.Task.WaitAsync(Deadline);
    }

    [Fact]
    public async Task Abort_FailsThePendingRead_AndClosesThePeer()
    {
        var pending = Input.ReadAsync().AsTask();
        _server.Abort(new ConnectionAbortedException("test abort"));

        var ex = await Assert.ThrowsAsync<ConnectionAbortedException>(() => pending.WaitAsync(Deadline));
        Assert.Equal("test abort", ex.Message);
        var flush = await WriteAsync(new byte[10]);
        Assert.True(flush.IsCompleted);

        var buffer = new byte[16];
        try
        {
            Assert.Equal(0, await _client.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(Deadline));
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
        }
    }

    [Fact]
    public async Task CancelPendingRead_ReturnsCanceled_ThenReadsGoOn()
    {
        var pending = Input.ReadAsync().AsTask();
        Input.CancelPendingRead();
        var result = await pending.WaitAsync(Deadline);
        Assert.True(result.IsCanceled);
        Input.AdvanceTo(result.Buffer.End);

        await SendAsync("z");
        result = await ReadAtLeastAsync(1);
        Assert.Equal("z", Text(result.Buffer));
        Input.AdvanceTo(result.Buffer.End);
    }

    [Fact]
    public async Task ReadCancellationToken_CancelsTheWait()
    {
        using var cts = new CancellationTokenSource();
        var pending = Input.ReadAsync(cts.Token).AsTask();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending.WaitAsync(Deadline));
    }

    [Fact]
    public async Task Idle_HoldsNoBuffer()
    {
        await SendAsync("hello");
        var result = await ReadAtLeastAsync(5);
        Input.AdvanceTo(result.Buffer.End);
        Assert.True((await WriteAsync("world"u8.ToArray())).IsCompleted is false);
        Assert.Equal("world", await ReceiveTextAsync(5));

        var pending = Input.ReadAsync();
        Assert.False(pending.IsCompleted);
        Assert.False(_server.Reader.HoldsBuffer);
        Assert.False(_server.Writer.HoldsBuffer);
        Input.CancelPendingRead();
        await pending;
    }

    [Fact]
    public async Task Backpressure_FlushWaitsForANonReadingPeer_ThenEverythingArrivesInOrder()
    {
        const int chunk = 16 * 1024;
        long written = 0;
        ValueTask<FlushResult> flush;
        var deadline = DateTime.UtcNow + Deadline;
        while (true)
        {
            var span = Output.GetSpan(chunk)[..chunk];
            for (int i = 0; i < chunk; i++)
            {
                span[i] = (byte)((written + i) % 251);
            }

            Output.Advance(chunk);
            written += chunk;
            flush = Output.FlushAsync();
            if (!flush.IsCompleted)
            {
                break;
            }

            Assert.True(DateTime.UtcNow < deadline, "FlushAsync never applied backpressure");
        }

        Assert.True(_server.Writer.Unsent > 64 * 1024);
        var received = new byte[written];
        var reader = Task.Run(async () =>
        {
            int at = 0;
            while (at < received.Length)
            {
                int n = await _client.ReceiveAsync(received.AsMemory(at));
                Assert.NotEqual(0, n);
                at += n;
            }
        });

        var flushTask = flush.AsTask();
        try
        {
            await flushTask.WaitAsync(Deadline);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"flush: written {written}, unsent {_server.Writer.Unsent}, client available {_client.Available}, reader {reader.Status} {reader.Exception?.InnerException?.Message}");
        }

        Assert.False((await flushTask).IsCompleted);
        try
        {
            await reader.WaitAsync(Deadline);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"written {written}, unsent {_server.Writer.Unsent}, client available {_client.Available}");
        }

        for (long i = 0; i < written; i++)
        {
            if (received[i] != (byte)(i % 251))
            {
                Assert.Fail($"byte {i} out of order");
            }
        }

        Assert.Equal(0, _server.Writer.Unsent);
    }

    [Fact]
    public async Task ConcurrentWriteAndRead_EchoesTwoMegabytes()
    {
        var payload = new byte[2 * 1024 * 1024];
        Random.Shared.NextBytes(payload);
        var echo = Task.Run(async () =>
        {
            while (true)
            {
                var result = await Input.ReadAsync();
                foreach (var segment in result.Buffer)
                {
                    await Output.WriteAsync(segment);
                }

                Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    await Output.CompleteAsync();
                    return;
                }
            }
        });

        var send = Task.Run(async () =>
        {
            for (int at = 0; at < payload.Length; at += 7000)
            {
                await _client.SendAsync(payload.AsMemory(at, Math.Min(7000, payload.Length - at)));
            }

            _client.Shutdown(SocketShutdown.Send);
        });

        var received = new MemoryStream();
        var buffer = new byte[65536];
        while (true)
        {
            int n = await _client.ReceiveAsync(buffer, SocketFlags.None).WaitAsync(Deadline);
            if (n == 0)
            {
                break;
            }

            received.Write(buffer, 0, n);
        }

        await send;
        await echo.WaitAsync(Deadline);
        Assert.True(received.ToArray().AsSpan().SequenceEqual(payload));
    }

    /// <summary>
    /// The transport's receive never waits: with nothing to read it answers WouldBlock at once, though the socket
    /// stays in .NET's blocking mode (the transport sets no O_NONBLOCK: two fcntl calls per connect less). A
    /// receive that waited for the peer's next bytes stalled RPC round trips for up to 1.7 s once.
    /// </summary>
    [Fact]
    public async Task Receive_WithNothingToRead_ReturnsWouldBlockAtOnce_ThoughTheSocketIsBlocking()
    {
        var idle = Input.ReadAsync().AsTask();
        await SendAsync("x");
        var first = await idle.WaitAsync(Deadline);
        Input.AdvanceTo(first.Buffer.End);
        Assert.True(_server.Socket.Blocking);

        var receive = Task.Factory.StartNew(
            () =>
            {
                int n = LeanEpoll.Receive(_server.Handle, new byte[16], 0, 16, out var status);
                return (n, status);
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
        var done = await Task.WhenAny(receive, Task.Delay(TimeSpan.FromSeconds(5)));
        if (done != receive)
        {
            await SendAsync("y"); // release the blocked receive so the test ends
            Assert.Fail("The transport's receive waited for the peer's bytes");
        }

        Assert.Equal((-1, SocketError.WouldBlock), await receive);
    }

    /// <summary>
    /// A connection waiting for bytes is held by nothing but its epoll registration (Kestrel tracks connections
    /// through weak references): a full collection must not take it. With a weak registration the connection
    /// was collected, the socket's finalizer closed it, and the read never completed (HTTP keep-alive
    /// connections waiting for their first request: "application never completed").
    /// </summary>
    [Fact]
    public async Task WaitingConnection_HeldOnlyByItsRegistration_SurvivesACollection()
    {
        var factory = new LeanSocketTransportFactory(new LeanSocketTransportOptions(), NullLoggerFactory.Instance);
        await using var listener = await factory.BindAsync(new LeanEndPoint(IPAddress.Loopback, 0));
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var received = await StartReadingAsync(listener, client);

        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        await client.SendAsync(System.Text.Encoding.ASCII.GetBytes("hello"));
        Assert.Equal("hello", await received.Task.WaitAsync(Deadline));
    }

    /// <summary>Connects, accepts and starts a read whose result completes the returned source; nothing the caller keeps refers to the connection.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static async Task<TaskCompletionSource<string>> StartReadingAsync(IConnectionListener listener, Socket client)
    {
        var accept = listener.AcceptAsync().AsTask();
        await client.ConnectAsync(listener.EndPoint);
        var connection = (await accept.WaitAsync(Deadline))!;
        var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        _ = ReadOnceAsync(connection.Transport.Input, received);
        return received;
    }

    private static async Task ReadOnceAsync(PipeReader input, TaskCompletionSource<string> received)
    {
        var result = await input.ReadAsync();
        received.SetResult(Text(result.Buffer));
        input.AdvanceTo(result.Buffer.End);
    }

    /// <summary>
    /// Edge-triggered readiness: a receive that leaves room in the buffer counts as having drained the socket,
    /// so every later byte must raise a new edge. Bursts of every size from 1 byte to past the buffer's size,
    /// each sent only after the previous one was read whole, must each arrive without any other traffic.
    /// </summary>
    [Fact]
    public async Task EveryBurst_AfterTheSocketWasDrained_WakesTheReader()
    {
        var random = new Random(12);
        for (int round = 0; round < 200; round++)
        {
            int size = round < 100 ? round + 1 : random.Next(1, 3 * LeanSocketReader.MinimumBufferSize);
            var burst = new byte[size];
            random.NextBytes(burst);
            var read = Input.ReadAsync().AsTask();
            await _client.SendAsync(burst);
            var received = new List<byte>();
            while (true)
            {
                var result = await read.WaitAsync(Deadline);
                received.AddRange(result.Buffer.ToArray());
                Input.AdvanceTo(result.Buffer.End);
                if (received.Count >= size)
                {
                    break;
                }

                read = Input.ReadAsync().AsTask();
            }

            Assert.Equal(burst, received.ToArray());
        }
    }

    /// <summary>
    /// Request/response as the MQTT door does an RPC: the read loop hands each request to another thread,
    /// which writes and flushes the answer while the read loop is already waiting for the next request.
    /// Every exchange must be answered promptly: a lost wake-up shows as an answer (or a request) that
    /// only moves when the peer sends something else, here never, so the exchange misses its deadline.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task PingPong_EveryExchangeIsAnsweredPromptly(bool answerFromAnotherThread)
    {
        const int Exchanges = 2000;
        // A lost wake-up stalls forever; 5 s leaves room for a loaded 2-core machine (1 s failed on exchange 0 at load average 8).
        var perExchange = TimeSpan.FromSeconds(5);
        var writeLock = new object();
        var serve = Task.Run(async () =>
        {
            while (true)
            {
                var result = await Input.ReadAsync();
                int requests = (int)result.Buffer.Length;
                Input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return;
                }

                for (int i = 0; i < requests; i++)
                {
                    if (answerFromAnotherThread)
                    {
                        ThreadPool.UnsafeQueueUserWorkItem(_ => Answer(), null);
                    }
                    else
                    {
                        Answer();
                    }
                }
            }
        });

        void Answer()
        {
            ValueTask<FlushResult> flush;
            lock (writeLock)
            {
                Output.Write("!"u8);
                flush = Output.FlushAsync();
            }

            Assert.True(flush.IsCompletedSuccessfully);
        }

        var request = new byte[] { (byte)'?' };
        var answer = new byte[1];
        for (int i = 0; i < Exchanges; i++)
        {
            await _client.SendAsync(request, SocketFlags.None);
            var receive = _client.ReceiveAsync(answer, SocketFlags.None);
            if (await Task.WhenAny(receive, Task.Delay(perExchange)) != receive)
            {
                Assert.Fail($"exchange {i} of {Exchanges}: no answer within {perExchange.TotalMilliseconds} ms (a lost wake-up)");
            }

            Assert.Equal(1, await receive);
        }

        _client.Shutdown(SocketShutdown.Send);
        await serve.WaitAsync(Deadline);
    }

    /// <summary>
    /// Reads complete on the one epoll thread, and a read finds bytes at once while its socket is never drained. A
    /// peer that sends faster than its handler works must not keep that thread to itself: after a few reads at once
    /// the reader waits for the loop's next pass, and another connection is served meanwhile. Here the flooding
    /// handler spends 2 ms per read (work, not waiting: the thread stays busy), so without the yield the other
    /// connection would not be answered while the flood lasts.
    /// </summary>
    [Fact]
    public async Task FloodingPeer_WithASlowHandler_DoesNotStarveAnotherConnection()
    {
        const int MaxAttempts = 10;
        using var flooding = new CancellationTokenSource();
        var floodingServer = _server;
        var floodReads = 0;
        var readOn = System.Threading.Channels.Channel.CreateUnbounded<string?>();
        // Off xunit's synchronization context, so the handlers' continuations run where the transport completes them.
        var longestRunAtOnce = 0;
        // The number of reads handled each time the handler's read waited (the first few only).
        var waitingAfter = System.Threading.Channels.Channel.CreateUnbounded<int>();
        var floodServe = Task.Run(() => ServeSlowlyAsync(floodingServer, run => longestRunAtOnce = Math.Max(longestRunAtOnce, run), () =>
        {
            if (Interlocked.Increment(ref floodReads) <= MaxAttempts + 1)
            {
                readOn.Writer.TryWrite(Thread.CurrentThread.Name);
            }

        }, () =>
        {
            if (Volatile.Read(ref floodReads) <= MaxAttempts + 1)
            {
                waitingAfter.Writer.TryWrite(Volatile.Read(ref floodReads));
            }
        }));

        // Single bytes, each sent once the one before was handled and the handler's next read waits (not before: a
        // byte already there when it reads completes that read on the handler's own thread). The epoll thread then
        // completes that read, and the handler runs there, as the MQTT door's connections do. A few attempts: the
        // handler says it waits just before its await registers, and a byte arriving in between (a loaded CI
        // machine, once) is read on the handler's own thread.
        await _client.SendAsync(new[] { (byte)'1' }, SocketFlags.None);
        await readOn.Reader.ReadAsync().AsTask().WaitAsync(Deadline);
        string? readThread = null;
        for (int attempt = 1; attempt <= MaxAttempts && readThread != "Lean transport epoll"; attempt++)
        {
            int handledBeforeWaiting;
            do
            {
                handledBeforeWaiting = await waitingAfter.Reader.ReadAsync().AsTask().WaitAsync(Deadline);
            }
            while (handledBeforeWaiting < attempt);

            await _client.SendAsync(new[] { (byte)'2' }, SocketFlags.None);
            readThread = await readOn.Reader.ReadAsync().AsTask().WaitAsync(Deadline);
        }

        Assert.Equal("Lean transport epoll", readThread);
        var flood = Task.Run(async () =>
        {
            var chunk = new byte[16 * 1024];
            while (!flooding.IsCancellationRequested)
            {
                await _client.SendAsync(chunk, SocketFlags.None);
            }
        });

        var factory = new LeanSocketTransportFactory(new LeanSocketTransportOptions(), NullLoggerFactory.Instance);
        await using var listener = await factory.BindAsync(new LeanEndPoint(IPAddress.Loopback, 0));
        using var other = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var accept = listener.AcceptAsync().AsTask();
        await other.ConnectAsync(listener.EndPoint);
        await using var otherServer = (LeanSocketConnection)(await accept.WaitAsync(Deadline))!;
        var echo = Task.Run(() => EchoAsync(otherServer));
        try
        {
            var answer = new byte[1];
            for (int i = 0; i < 20; i++)
            {
                await other.SendAsync(new[] { (byte)'?' }, SocketFlags.None);
                var receive = other.ReceiveAsync(answer, SocketFlags.None);
                if (await Task.WhenAny(receive, Task.Delay(TimeSpan.FromSeconds(5))) != receive)
                {
                    Assert.Fail($"exchange {i}: no answer within 5 s while another connection floods ({Volatile.Read(ref floodReads)} flood reads)");
                }
                Assert.Equal(1, await receive);
            }
            Assert.True(Volatile.Read(ref floodReads) > 20);
        }
        finally
        {
            await flooding.CancelAsync();
            await flood.WaitAsync(Deadline);
            _client.Shutdown(SocketShutdown.Send);
            await floodServe.WaitAsync(Deadline);
            other.Shutdown(SocketShutdown.Send);
            await echo.WaitAsync(Deadline);
        }

        // The flood kept its socket full (it read at once most of the time) and still let go of the thread.
        Assert.InRange(longestRunAtOnce, 2, LeanSocketReader.MaxReadsAtOnce);

        static async Task ServeSlowlyAsync(LeanSocketConnection server, Action<int> onRunAtOnce, Action onRead, Action onWaiting)
        {
            var input = server.Transport.Input;
            var atOnce = 0;
            while (true)
            {
                // Reads completed at once, in a row: the epoll thread kept for this connection alone.
                var read = input.ReadAsync();
                atOnce = read.IsCompleted ? atOnce + 1 : 0;
                onRunAtOnce(atOnce);
                if (!read.IsCompleted)
                {
                    onWaiting();
                }

                var result = await read;
                input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return;
                }
                onRead();
                var work = System.Diagnostics.Stopwatch.StartNew();
                while (work.Elapsed < TimeSpan.FromMilliseconds(2))
                {
                    Thread.SpinWait(100);
                }
            }
        }

        static async Task EchoAsync(LeanSocketConnection server)
        {
            var input = server.Transport.Input;
            var output = server.Transport.Output;
            while (true)
            {
                var result = await input.ReadAsync();
                var requests = (int)result.Buffer.Length;
                input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return;
                }
                for (int i = 0; i < requests; i++)
                {
                    output.Write("!"u8);
                }
                await output.FlushAsync();
            }
        }
    }

    /// <summary>
    /// The RPC load pattern: several connections at once, each answering from another thread while its read
    /// waits. A read that goes through a blocking receive (the zero-byte receive fired, then a blocking-mode
    /// <c>Socket.Receive</c> that waits for the next readiness event) holds a pool thread and the answer
    /// until the peer sends again: here it never does, so the exchange misses its (generous) deadline.
    /// </summary>
    [Fact]
    public async Task PingPong_ManyConnectionsAtOnce_NoExchangeStalls()
    {
        const int Connections = 8;
        const int Exchanges = 400;
        // A lost wake-up stalls forever; 5 s leaves room for a loaded 2-core machine (1 s failed on exchange 0 at load average 8).
        var perExchange = TimeSpan.FromSeconds(5);
        var factory = new LeanSocketTransportFactory(new LeanSocketTransportOptions(), NullLoggerFactory.Instance);
        await using var listener = await factory.BindAsync(new LeanEndPoint(IPAddress.Loopback, 0));
        var clients = new List<Task>();
        var servers = new List<LeanSocketConnection>();
        try
        {
            for (int c = 0; c < Connections; c++)
            {
                var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                var accept = listener.AcceptAsync().AsTask();
                await client.ConnectAsync(listener.EndPoint);
                var server = (LeanSocketConnection)(await accept.WaitAsync(Deadline))!;
                servers.Add(server);
                _ = ServeAsync(server);
                clients.Add(Task.Run(async () =>
                {
                    using (client)
                    {
                        var request = new byte[] { (byte)'?' };
                        var answer = new byte[1];
                        for (int i = 0; i < Exchanges; i++)
                        {
                            await client.SendAsync(request, SocketFlags.None);
                            var receive = client.ReceiveAsync(answer, SocketFlags.None);
                            if (await Task.WhenAny(receive, Task.Delay(perExchange)) != receive)
                            {
                                Assert.Fail($"exchange {i} of {Exchanges}: no answer within {perExchange.TotalMilliseconds} ms (a stalled read or send)");
                            }

                            Assert.Equal(1, await receive);
                        }
                    }
                }));
            }

            await Task.WhenAll(clients).WaitAsync(TimeSpan.FromMinutes(2));
        }
        finally
        {
            foreach (var server in servers)
            {
                await server.DisposeAsync();
            }
        }

        static async Task ServeAsync(LeanSocketConnection server)
        {
            var input = server.Transport.Input;
            var output = server.Transport.Output;
            var writeLock = new object();
            try
            {
                while (true)
                {
                    var result = await input.ReadAsync();
                    int requests = (int)result.Buffer.Length;
                    input.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted)
                    {
                        return;
                    }

                    for (int i = 0; i < requests; i++)
                    {
                        ThreadPool.UnsafeQueueUserWorkItem(_ =>
                        {
                            ValueTask<FlushResult> flush;
                            lock (writeLock)
                            {
                                output.Write("!"u8);
                                flush = output.FlushAsync();
                            }

                            Assert.True(flush.IsCompletedSuccessfully);
                        }, null);
                    }
                }
            }
            catch (Exception ex) when (ex is ConnectionAbortedException or InvalidOperationException or IOException)
            {
                // Disposed by the test.
            }
        }
    }

    [Fact]
    public async Task WriterComplete_SendsWhatWasWritten_ThenFin()
    {
        Output.Write("bye"u8);
        await Output.CompleteAsync();
        Assert.Equal("bye", await ReceiveTextAsync(3));
        Assert.Equal(0, await _client.ReceiveAsync(new byte[8], SocketFlags.None).WaitAsync(Deadline));
    }

    [Fact]
    public async Task Features_AnswerForTheConnection_AndKeepWhatIsSet()
    {
        Assert.Same(_server, _server.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionTransportFeature>());
        Assert.Same(_server.Socket, _server.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionSocketFeature>()!.Socket);
        var marker = new Marker();
        _server.Features.Set(marker);
        Assert.Same(marker, _server.Features.Get<Marker>());
        _server.Features.Set<Marker>(null);
        Assert.Null(_server.Features.Get<Marker>());
        Assert.Equal(_client.LocalEndPoint, _server.RemoteEndPoint);
        Assert.Equal(13, _server.ConnectionId.Length);
        Assert.Equal(_server.ConnectionId, _server.ConnectionId); // built at each read, the same each time
        await Task.CompletedTask;
    }

    private sealed class Marker;

    private async Task ConnectAsync(int maxUnsent)
    {
        var factory = new LeanSocketTransportFactory(new LeanSocketTransportOptions { MaxUnsentBytes = maxUnsent }, NullLoggerFactory.Instance);
        _listener = await factory.BindAsync(new LeanEndPoint(IPAddress.Loopback, 0));
        _client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        var accept = _listener.AcceptAsync().AsTask();
        await _client.ConnectAsync(_listener.EndPoint);
        _server = (LeanSocketConnection)(await accept.WaitAsync(Deadline))!;
    }

    private async Task SendAsync(string text) => await _client.SendAsync(System.Text.Encoding.ASCII.GetBytes(text));

    private async Task<FlushResult> WriteAsync(byte[] data) => await Output.WriteAsync(data);

    /// <summary>Reads, examining without consuming, until at least <paramref name="count"/> bytes (and, if asked, the FIN) are there.</summary>
    private async Task<ReadResult> ReadAtLeastAsync(int count, bool untilCompleted = false)
    {
        while (true)
        {
            var result = await Input.ReadAsync().AsTask().WaitAsync(Deadline);
            if ((result.Buffer.Length >= count && (!untilCompleted || result.IsCompleted)) || result.IsCompleted)
            {
                return result;
            }

            Input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    private async Task<string> ReceiveTextAsync(int count)
    {
        var buffer = new byte[count];
        int at = 0;
        while (at < count)
        {
            int n = await _client.ReceiveAsync(buffer.AsMemory(at)).AsTask().WaitAsync(Deadline);
            Assert.NotEqual(0, n);
            at += n;
        }

        return System.Text.Encoding.ASCII.GetString(buffer);
    }

    private static string Text(ReadOnlySequence<byte> buffer) => System.Text.Encoding.ASCII.GetString(buffer.ToArray());
}
