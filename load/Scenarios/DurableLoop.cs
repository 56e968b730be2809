using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using FASTER.core;
using Microsoft.Win32.SafeHandles;
using Perf.Core;
using Perf.Core.Internal;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>durable-loop</c>: the durable floor in .NET, the twin of load/native/durable-sink.c. One thread waits on one
/// epoll set; each round reads what the ready connections sent, writes all their complete packets in one
/// write-through (<c>O_SYNC</c>) write, and only then sends the round's CONNACKs and PUBACKs. No thread pool, no
/// hand-off between threads. Next to <c>bare-server --durable</c> (the same group commit with Kestrel's threads) it
/// shows what the runtime costs and what the hand-offs cost (docs/PERFORMANCE.md, issue 12 row 5). x64 Linux only.
/// </summary>
public static class DurableLoop
{
    public const string Help = """
          durable-loop   --durable DIR [--port 1883] [--duration 0 = until Ctrl+C / SIGTERM] [--log pwrite|faster]
                         the durable floor in .NET: one thread reads, writes the packets write-through to a file in
                         DIR and answers CONNECT and QoS 1 PUBLISH (as load/native/durable-sink.c); prints its writes'
                         latencies at the end and deletes the file. --log faster: each round's packets go to the
                         uplink log's own FasterLog (Core's device, settings and commit manager, default options)
                         and the loop waits for its commit instead of one pwrite
        """;

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var port = o.Int("port", 1883, 1, 65535);
        var directory = o.StringOrNull("durable") ?? throw new OptionsException("durable-loop needs --durable DIR.");
        var duration = o.Duration("duration", TimeSpan.Zero);
        var log = o.String("log", "pwrite");
        o.ThrowIfUnused();
        if (log is not ("pwrite" or "faster"))
        {
            throw new OptionsException($"--log: pwrite or faster, got '{log}'.");
        }

        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
        {
            throw new OptionsException("durable-loop runs on x64 Linux only (epoll through P/Invoke).");
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });
        if (duration > TimeSpan.Zero)
        {
            stop.CancelAfter(duration);
        }

        var loop = DurableEventLoop.Start(new IPEndPoint(IPAddress.Loopback, port), directory, useFasterLog: log == "faster");
        Console.WriteLine($"durable-loop listening on {loop.EndPoint} pid {Environment.ProcessId}, PUBACK after a write-through write to {loop.Path}");
        try
        {
            await Task.Delay(Timeout.InfiniteTimeSpan, stop.Token);
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }

        Console.WriteLine(loop.Stop());
        return 0;
    }
}

/// <summary>
/// The loop of <see cref="DurableLoop"/> on its own thread; <see cref="Stop"/> ends it and deletes its files. With a
/// FasterLog, each round enqueues its packets and waits for the log's commit (FASTER's device writes on the thread
/// pool and completes the commit from there): what FASTER's commit adds to the same loop.
/// </summary>
public sealed class DurableEventLoop
{
    private const int InCapacity = 64 * 1024;
    private const int MaxEvents = 1024;
    private const uint EPOLLIN = 0x001;
    private const int EPOLL_CTL_ADD = 1;
    private const int EPOLL_CTL_DEL = 2;
    private const int MSG_DONTWAIT = 0x40;
    private const int MSG_NOSIGNAL = 0x4000;
    private const int SOCK_NONBLOCK = 0x800;
    private const int EAGAIN = 11;
    private const int EINTR = 4;

    private readonly Socket _listener;
    private readonly int _epoll;
    private readonly SafeFileHandle _file;
    private readonly FasterLog? _log;
    private readonly IDevice? _logDevice;
    private readonly IDisposable? _commitManager;
    private readonly string? _logDirectory;
    private readonly Thread _thread;
    private readonly Dictionary<int, Connection> _connections = [];
    private readonly List<Connection> _dirty = [];
    private readonly List<double> _writeMs = [];
    private byte[] _group = new byte[1 << 20];
    private volatile bool _stopping;
    private string? _failure;
    private long _publishes;
    private long _bytes;

    private DurableEventLoop(Socket listener, string path, bool useFasterLog)
    {
        _listener = listener;
        Path = path;
        _file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read, FileOptions.WriteThrough);
        if (useFasterLog)
        {
            // The uplink log's own device, settings and commit manager (src/Core/Internal/UplinkLog.cs), defaults.
            _logDirectory = path + ".faster";
            (var settings, _logDevice, _commitManager) = UplinkLog.NewLogSettings(_logDirectory, new CoreOptions());
            _log = new FasterLog(settings);
        }

        _epoll = EpollCreate1(0);
        if (_epoll < 0)
        {
            throw new SocketException(Marshal.GetLastPInvokeError());
        }

        Add((int)_listener.Handle);
        _thread = new Thread(Run) { IsBackground = true, Name = "durable-loop" };
        _thread.Start();
    }

    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndPoint!;

    public string Path { get; }

    /// <summary>The file that holds the packets: <see cref="Path"/>, or the FasterLog's first segment.</summary>
    public string DataPath => _logDirectory is null ? Path : System.IO.Path.Combine(_logDirectory, "uplink.log.0");

    /// <summary>Binds <paramref name="endPoint"/> (port 0: a free one) and starts the loop; the file in <paramref name="directory"/> must be new.</summary>
    public static DurableEventLoop Start(IPEndPoint endPoint, string directory, bool useFasterLog = false)
    {
        Directory.CreateDirectory(directory);
        var listener = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { Blocking = false, NoDelay = true };
        try
        {
            listener.Bind(endPoint);
            listener.Listen(4096);
            return new DurableEventLoop(listener, System.IO.Path.Combine(directory, $"durable-loop-{Environment.ProcessId}-{endPoint.Port}.log"), useFasterLog);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
    }

    /// <summary>Ends the loop, closes every connection, deletes the file and returns the report line.</summary>
    public string Stop()
    {
        _stopping = true;
        _thread.Join();
        foreach (var fd in _connections.Keys)
        {
            Close(fd);
        }

        _listener.Dispose();
        Close(_epoll);
        _file.Dispose();
        File.Delete(Path);
        _log?.Dispose();
        _logDevice?.Dispose();
        _commitManager?.Dispose();
        if (_logDirectory is not null)
        {
            Directory.Delete(_logDirectory, recursive: true);
        }

        _writeMs.Sort();
        string At(double p) => _writeMs.Count == 0 ? "-" : _writeMs[Math.Min(_writeMs.Count - 1, (int)(_writeMs.Count * p))].ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
        return $"writes {_writeMs.Count} bytes {_bytes} publishes {_publishes}: write ms p50 {At(0.5)} p90 {At(0.9)} p99 {At(0.99)} p99.9 {At(0.999)} max {At(1)}"
            + (_failure is null ? "" : $"; stopped by a failed write: {_failure}");
    }

    private void Run()
    {
        var events = new EpollEvent[MaxEvents];
        long offset = 0;
        while (!_stopping)
        {
            // A timeout, so a stop is seen while nothing arrives.
            int ready = EpollWait(_epoll, events, MaxEvents, 100);
            if (ready < 0 && Marshal.GetLastPInvokeError() != EINTR)
            {
                throw new SocketException(Marshal.GetLastPInvokeError());
            }

            int groupLength = 0;
            for (int i = 0; i < ready; i++)
            {
                int fd = (int)events[i].Data;
                if (fd == (int)_listener.Handle)
                {
                    Accept();
                }
                else if (_connections.TryGetValue(fd, out var connection))
                {
                    groupLength = Read(connection, groupLength);
                }
            }

            if (groupLength > 0)
            {
                long started = Stopwatch.GetTimestamp();
                try
                {
                    if (_log is null)
                    {
                        RandomAccess.Write(_file, _group.AsSpan(0, groupLength), offset);
                    }
                    else
                    {
                        _log.Enqueue(_group.AsSpan(0, groupLength));
                        _log.CommitAsync().AsTask().GetAwaiter().GetResult();
                    }
                }
                catch (Exception e) when (e is IOException or CommitFailureException)
                {
                    // Nothing of this round is answered; the loop ends and the report says why.
                    _failure = e.Message;
                    return;
                }

                _writeMs.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                offset += groupLength;
                _bytes += groupLength;
            }

            // The round's answers, only now that its packets are on the disk.
            foreach (var connection in _dirty)
            {
                if (!connection.Closed && !SendAll(connection.Fd, connection.Out, connection.OutLength))
                {
                    Drop(connection);
                }

                connection.OutLength = 0;
                connection.Dirty = false;
            }

            _dirty.Clear();
        }
    }

    private void Accept()
    {
        int fd;
        while ((fd = Accept4((int)_listener.Handle, 0, 0, SOCK_NONBLOCK)) >= 0)
        {
            _connections[fd] = new Connection(fd);
            Add(fd);
        }
    }

    /// <summary>One receive; complete packets go to the group and their answers to the connection. Returns the group's new length.</summary>
    private int Read(Connection c, int groupLength)
    {
        nint n = Recv(c.Fd, ref c.In[c.InLength], InCapacity - c.InLength, MSG_DONTWAIT);
        if (n <= 0)
        {
            if (n == 0 || Marshal.GetLastPInvokeError() != EAGAIN)
            {
                Drop(c);
            }

            return groupLength;
        }

        c.InLength += (int)n;
        int at = 0;
        while (at < c.InLength)
        {
            if (!TryReadFixedHeader(c.In.AsSpan(at, c.InLength - at), out int header, out int remaining))
            {
                if (header < 0)
                {
                    Drop(c); // malformed remaining length, or a packet larger than the read buffer
                    return groupLength;
                }

                break;
            }

            var packet = c.In.AsSpan(at, header + remaining);
            int type = packet[0] >> 4;
            if (type == 1)
            {
                c.Answer([0x20, 0x02, 0x00, 0x00]);
            }
            else if (type == 3 && (packet[0] & 0x06) == 0x02 && remaining >= 4)
            {
                int topic = packet[header] << 8 | packet[header + 1];
                if (topic + 4 > remaining)
                {
                    Drop(c);
                    return groupLength;
                }

                c.Answer([0x40, 0x02, packet[header + 2 + topic], packet[header + 3 + topic]]);
                _publishes++;
            }

            if (groupLength + packet.Length > _group.Length)
            {
                Array.Resize(ref _group, Math.Max(_group.Length * 2, groupLength + packet.Length));
            }

            packet.CopyTo(_group.AsSpan(groupLength));
            groupLength += packet.Length;
            at += packet.Length;
        }

        c.In.AsSpan(at, c.InLength - at).CopyTo(c.In);
        c.InLength -= at;
        if (c.OutLength > 0 && !c.Dirty)
        {
            c.Dirty = true;
            _dirty.Add(c);
        }

        return groupLength;
    }

    /// <summary>False with <paramref name="header"/> 0 when more bytes are needed, -1 when the packet is malformed or too large.</summary>
    private static bool TryReadFixedHeader(ReadOnlySpan<byte> data, out int header, out int remaining)
    {
        remaining = 0;
        for (int i = 1, shift = 0; i < 5; i++, shift += 7)
        {
            if (i >= data.Length)
            {
                header = 0;
                return false;
            }

            remaining |= (data[i] & 0x7F) << shift;
            if ((data[i] & 0x80) == 0)
            {
                header = i + 1;
                if (remaining > InCapacity - 5)
                {
                    header = -1;
                    return false;
                }

                return data.Length >= header + remaining;
            }
        }

        header = -1;
        return false;
    }

    private static bool SendAll(int fd, byte[] data, int length)
    {
        for (int done = 0; done < length;)
        {
            nint n = Send(fd, ref data[done], length - done, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0)
            {
                if (Marshal.GetLastPInvokeError() is EAGAIN or EINTR)
                {
                    continue; // the answers of one round are small; the socket drains
                }

                return false;
            }

            done += (int)n;
        }

        return true;
    }

    private void Drop(Connection c)
    {
        if (c.Closed)
        {
            return;
        }

        c.Closed = true;
        _connections.Remove(c.Fd);
        EpollCtl(_epoll, EPOLL_CTL_DEL, c.Fd, IntPtr.Zero);
        Close(c.Fd);
    }

    private void Add(int fd)
    {
        var add = new EpollEvent { Events = EPOLLIN, Data = (ulong)fd };
        if (EpollCtl(_epoll, EPOLL_CTL_ADD, fd, ref add) < 0)
        {
            throw new SocketException(Marshal.GetLastPInvokeError());
        }
    }

    private sealed class Connection(int fd)
    {
        public readonly int Fd = fd;
        public readonly byte[] In = new byte[InCapacity];
        public byte[] Out = new byte[256];
        public int InLength;
        public int OutLength;
        public bool Dirty;
        public bool Closed;

        public void Answer(ReadOnlySpan<byte> answer)
        {
            if (OutLength + answer.Length > Out.Length)
            {
                Array.Resize(ref Out, Out.Length * 2);
            }

            answer.CopyTo(Out.AsSpan(OutLength));
            OutLength += answer.Length;
        }
    }

    // struct epoll_event is packed on x86-64: events at 0, data at 4, 12 bytes.
    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    private struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [DllImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    private static extern int EpollCreate1(int flags);

    [DllImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    private static extern int EpollCtl(int epfd, int op, int fd, ref EpollEvent ev);

    [DllImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    private static extern int EpollCtl(int epfd, int op, int fd, IntPtr ev);

    [DllImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    private static extern int EpollWait(int epfd, [Out] EpollEvent[] events, int maxEvents, int timeout);

    [DllImport("libc", EntryPoint = "accept4", SetLastError = true)]
    private static extern int Accept4(int fd, nint address, nint length, int flags);

    [DllImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static extern nint Recv(int fd, ref byte buffer, nint length, int flags);

    [DllImport("libc", EntryPoint = "send", SetLastError = true)]
    private static extern nint Send(int fd, ref byte buffer, nint length, int flags);

    [DllImport("libc", EntryPoint = "close", SetLastError = true)]
    private static extern int Close(int fd);
}
