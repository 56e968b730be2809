using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Perf.Core;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// Readiness of the lean transport's sockets (Linux): one edge-triggered epoll instance and one thread that
/// waits on it and completes each readable socket's waiting read itself (<see cref="LeanSocketReader.OnReadiness"/>),
/// so the MQTT connections' packets are parsed and their uplinks queued on this thread. The thread drives the uplink
/// log's rounds (<see cref="CommitRounds"/>): after each batch of events it commits what the batch queued, applies it
/// and sends the PUBACKs before it waits again. Reads and sends are plain <c>recv</c>/<c>send</c> calls with
/// <c>MSG_DONTWAIT</c>, so the socket stays in .NET's default (blocking) mode and never enters .NET's own
/// socket engine unless a send finds the kernel's buffer full.
/// </summary>
/// <remarks>
/// Issue 12 (connect rate, PUBACK latency): .NET's engine costs per read cycle a one-byte peek that fails,
/// the epoll event, the peek again and then the receive, and per accepted socket two <c>fcntl</c> calls
/// (non-blocking mode) on its first asynchronous operation. Here a read cycle is the epoll event and one
/// <c>recv</c> (a receive that leaves room in the buffer drained the socket: the next bytes raise a new edge),
/// and an accepted socket costs one <c>epoll_ctl</c>.
/// Issue 12 (row 5, PUBACK latency at half the maximum rate, docs/PERFORMANCE.md "Session of 2026-11-24, 07:02"):
/// with the reads handed to the pool and the commit on the log's own loop, each PUBACK crossed five threads (this
/// one, a pool reader, the log's issuing and applying loops, a pool pump). Done here, a batch's PUBACKs need no
/// hand-off: p50 at 185,000 msgs/s went from about 5 ms to 3.3 ms and the maximum rate rose by about a quarter. While a
/// round commits, this thread does not read: the next batch gathers meanwhile, as the group commit did.
/// </remarks>
internal sealed unsafe partial class LeanEpoll : IThreadPoolWorkItem
{
    internal const uint EPOLLIN = 0x001;
    internal const uint EPOLLERR = 0x008;
    internal const uint EPOLLHUP = 0x010;
    internal const uint EPOLLRDHUP = 0x2000;
    internal const uint EPOLLET = 1u << 31;

    private const int EPOLL_CTL_ADD = 1;
    private const int EPOLL_CTL_DEL = 2;
    private const int EPOLL_CLOEXEC = 0x80000;
    private const int MSG_DONTWAIT = 0x40;
    private const int MSG_NOSIGNAL = 0x4000;
    private const int MaxEvents = 256;

    /// <summary>How long one pool work item drains ready readers before it hands the rest to another (as .NET's engine).</summary>
    private const int DrainSliceMs = 10;

    // struct epoll_event is packed on x86-64 (12 bytes: events, then data at offset 4) and naturally aligned
    // elsewhere (16 bytes, data at offset 8).
    private static readonly int s_eventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;
    private static readonly int s_dataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    private static readonly Lazy<LeanEpoll> s_shared = new(() => new LeanEpoll(), LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly int _epoll;

    /// <summary>Registrations removed from the epoll set, freed by the loop between two batches of events.</summary>
    private readonly ConcurrentQueue<nint> _released = new();

    /// <summary>Readers whose completion was dispatched from another thread (a connection aborting), for the pool (<see cref="Execute"/>).</summary>
    private readonly ConcurrentQueue<LeanSocketReader> _ready = new();

    /// <summary>Readers that had their share of reads at once (<see cref="Yield"/>); the loop's own, for its next pass.</summary>
    private List<LeanSocketReader> _yielded = new();

    /// <summary>The readers of <see cref="_yielded"/> being completed (swapped with it, so that they can yield again).</summary>
    private List<LeanSocketReader> _resuming = new();

    [ThreadStatic]
    private static bool t_loop;

    /// <summary>Whether the calling thread is the epoll thread.</summary>
    internal static bool IsLoopThread => t_loop;

    /// <summary>1 while a pool work item to drain <see cref="_ready"/> is queued and has not started.</summary>
    private int _drainRequested;

    private LeanEpoll()
    {
        _epoll = EpollCreate1(EPOLL_CLOEXEC);
        if (_epoll < 0)
        {
            throw new SocketException(Marshal.GetLastPInvokeError());
        }

        new Thread(Run) { IsBackground = true, Name = "Lean transport epoll" }.Start();
    }

    /// <summary>The process's instance (created with its thread on first use).</summary>
    public static LeanEpoll Shared => s_shared.Value;

    /// <summary>
    /// Adds <paramref name="socket"/> to the epoll set, edge-triggered for input and hang-up; its events go to
    /// <paramref name="target"/>: a connection's <see cref="LeanSocketReader"/>, or a listening socket's
    /// <see cref="LeanSocketListener"/> (a new connection to accept). The token is for <see cref="Deregister"/>.
    /// </summary>
    /// <remarks>
    /// The handle is strong on purpose: while a connection waits for bytes, nothing else need hold it (Kestrel
    /// tracks connections through weak references, and the awaiting handler is reachable only from the reader).
    /// With a weak handle a connection waiting for its first request was collected, its socket closed by the
    /// finalizer, and Kestrel logged "application never completed". .NET's own engine roots a pending receive
    /// the same way.
    /// </remarks>
    public nint Register(SafeHandle socket, object target)
    {
        nint token = GCHandle.ToIntPtr(GCHandle.Alloc(target));
        byte* ev = stackalloc byte[16];
        *(uint*)ev = EPOLLIN | EPOLLRDHUP | EPOLLET;
        Unsafe.WriteUnaligned(ev + s_dataOffset, (ulong)token);
        int result = Control(socket, EPOLL_CTL_ADD, ev);
        if (result < 0)
        {
            int error = Marshal.GetLastPInvokeError();
            GCHandle.FromIntPtr(token).Free();
            throw new SocketException((int)ToSocketError(error));
        }

        return token;
    }

    /// <summary>Removes the socket from the epoll set (before it is closed); the registration is freed by the loop.</summary>
    public void Deregister(SafeHandle socket, nint token)
    {
        if (token == 0)
        {
            return;
        }

        // A socket already closed has left the set with its descriptor: nothing to remove, and no error to report.
        Control(socket, EPOLL_CTL_DEL, null);
        _released.Enqueue(token);
    }

    /// <summary>
    /// <c>recv(MSG_DONTWAIT)</c>: bytes received (0 at the end of the stream), or -1 with
    /// <paramref name="error"/> (<see cref="SocketError.WouldBlock"/> when nothing is waiting).
    /// </summary>
    public static int Receive(SafeHandle socket, byte[] buffer, int offset, int count, out SocketError error)
    {
        fixed (byte* p = buffer)
        {
            return Transfer(socket, p + offset, count, MSG_DONTWAIT, send: false, out error);
        }
    }

    /// <summary><c>send(MSG_DONTWAIT | MSG_NOSIGNAL)</c>: bytes the kernel took, or -1 with <paramref name="error"/>.</summary>
    public static int Send(SafeHandle socket, byte[] buffer, int offset, int count, out SocketError error)
    {
        fixed (byte* p = buffer)
        {
            return Transfer(socket, p + offset, count, MSG_DONTWAIT | MSG_NOSIGNAL, send: true, out error);
        }
    }

    private static int Transfer(SafeHandle handle, byte* data, int count, int flags, bool send, out SocketError error)
    {
        // Held for the call, so the descriptor is not closed (and its number reused by another connection) under it; a
        // socket already closed reports OperationAborted.
        if (!LeanSocketHandle.TryAcquire(handle, out int fd))
        {
            error = SocketError.OperationAborted;
            return -1;
        }

        try
        {
            while (true)
            {
                nint n = send ? SysSend(fd, data, count, flags) : SysRecv(fd, data, count, flags);
                if (n >= 0)
                {
                    error = SocketError.Success;
                    return (int)n;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR)
                {
                    continue;
                }

                error = ToSocketError(errno);
                return -1;
            }
        }
        finally
        {
            handle.DangerousRelease();
        }
    }

    /// <summary><c>epoll_ctl</c> on the socket's descriptor, held open for the call; -1 when it is already closed.</summary>
    private int Control(SafeHandle handle, int operation, byte* ev)
    {
        if (!LeanSocketHandle.TryAcquire(handle, out int fd))
        {
            return -1;
        }

        try
        {
            return EpollCtl(_epoll, operation, fd, ev);
        }
        finally
        {
            handle.DangerousRelease();
        }
    }

    // Entered once and never left: compiled optimized at once rather than running the unoptimized tier until
    // on-stack replacement swaps it.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Run()
    {
        byte* events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * s_eventSize));
        CommitRounds.Drive();
        t_loop = true;
        while (true)
        {
            // A timeout, so registrations released while no socket is active are still freed; none while readers wait
            // for their turn.
            int ready = EpollWait(_epoll, events, MaxEvents, _yielded.Count > 0 ? 0 : 1000);
            if (ready < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR)
                {
                    continue;
                }

                Environment.FailFast($"The lean transport's epoll_wait failed: errno {errno}.");
            }

            for (int i = 0; i < ready; i++)
            {
                byte* ev = events + (i * s_eventSize);
                uint flags = *(uint*)ev;
                nint token = (nint)Unsafe.ReadUnaligned<ulong>(ev + s_dataOffset);
                var target = GCHandle.FromIntPtr(token).Target;
                if (target is LeanSocketReader reader)
                {
                    if (reader.OnReadiness(flags))
                    {
                        reader.CompleteWaitingRead();
                    }
                }
                else
                {
                    (target as LeanSocketListener)?.OnReadable();
                }
            }

            if (_yielded.Count > 0)
            {
                (_yielded, _resuming) = (_resuming, _yielded);
                foreach (var reader in _resuming)
                {
                    reader.CompleteWaitingRead();
                }

                _resuming.Clear();
            }

            CommitRounds.RunDeferred();

            // Every event naming a released registration was in a batch taken before its removal: the batch
            // just handled at the latest, so freeing it now cannot hand its slot to an event still to come.
            while (_released.TryDequeue(out var released))
            {
                GCHandle.FromIntPtr(released).Free();
            }
        }
    }

    /// <summary>Linux errno to <see cref="SocketError"/> (the codes a stream socket's recv, send and epoll_ctl give).</summary>
    internal static SocketError ToSocketError(int errno) => errno switch
    {
        Errno.EAGAIN => SocketError.WouldBlock,
        Errno.EBADF => SocketError.OperationAborted, // closed under us
        Errno.ENOMEM or Errno.ENOBUFS => SocketError.NoBufferSpaceAvailable,
        Errno.ENFILE or Errno.EMFILE => SocketError.TooManyOpenSockets,
        Errno.EPIPE => SocketError.Shutdown, // the send side is shut down
        Errno.ENETUNREACH => SocketError.NetworkUnreachable,
        Errno.ECONNABORTED => SocketError.ConnectionAborted,
        Errno.ECONNRESET => SocketError.ConnectionReset,
        Errno.ENOTCONN => SocketError.NotConnected,
        Errno.ESHUTDOWN => SocketError.Shutdown,
        Errno.ETIMEDOUT => SocketError.TimedOut,
        Errno.EHOSTUNREACH => SocketError.HostUnreachable,
        _ => SocketError.SocketError,
    };

    /// <summary>
    /// On the epoll thread: <paramref name="reader"/> had its share of reads at once; its waiting read is completed on
    /// the loop's next pass, after the events that came meanwhile.
    /// </summary>
    internal void Yield(LeanSocketReader reader) => _yielded.Add(reader);

    /// <summary>Queues <paramref name="reader"/>'s completion to the pool (a connection aborting, off the epoll thread).</summary>
    public void Dispatch(LeanSocketReader reader)
    {
        _ready.Enqueue(reader);
        RequestDrain();
    }

    /// <summary>
    /// Drains the ready readers on a pool thread, as .NET's socket engine does with its events: one work item is
    /// queued per batch rather than one per socket (each queued item can wake a worker), and a drain that finds
    /// more than one reader queues another item first so a second worker can share a large batch.
    /// </summary>
    void IThreadPoolWorkItem.Execute()
    {
        Volatile.Write(ref _drainRequested, 0);
        if (!_ready.TryDequeue(out var reader))
        {
            return;
        }

        if (!_ready.IsEmpty)
        {
            RequestDrain();
        }

        reader.CompleteWaitingRead();
        long deadline = Environment.TickCount64 + DrainSliceMs;
        while (Environment.TickCount64 < deadline && _ready.TryDequeue(out reader))
        {
            reader.CompleteWaitingRead();
        }

        if (!_ready.IsEmpty)
        {
            RequestDrain();
        }
    }

    private void RequestDrain()
    {
        if (!_ready.IsEmpty && Interlocked.CompareExchange(ref _drainRequested, 1, 0) == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    [LibraryImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    private static partial int EpollCreate1(int flags);

    [LibraryImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    private static partial int EpollCtl(int epfd, int op, int fd, byte* ev);

    [LibraryImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    private static partial int EpollWait(int epfd, byte* events, int maxEvents, int timeout);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint SysRecv(int fd, byte* buffer, nint length, int flags);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint SysSend(int fd, byte* buffer, nint length, int flags);
}
