using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// An accepted socket's descriptor (Linux), owned by its <see cref="LeanSocketConnection"/>: 32 bytes where a
/// <see cref="Socket"/>, its <see cref="SafeSocketHandle"/> and the peer's <see cref="IPEndPoint"/> take about 250.
/// Like any <see cref="SafeHandle"/>, it is closed only once no call holds a reference, so a descriptor number is never
/// reused under a receive or send still running on it. Closing is a plain <c>close</c>: bytes the kernel holds are still
/// sent (a <see cref="SafeSocketHandle"/> closed without its <see cref="Socket"/> resets the connection instead).
/// </summary>
/// <remarks>
/// Issue 12 (memory per idle connection): a <see cref="Socket"/> for the connection is made only when something needs
/// one (<see cref="LeanSocketConnection.Socket"/>): a send the kernel cannot take at once, or the socket feature.
/// </remarks>
internal sealed unsafe partial class LeanSocketHandle : SafeHandle
{
    private const int AF_INET = 2;
    private const int AF_INET6 = 10;
    private const int SOCK_CLOEXEC = 0x80000;
    private const int F_DUPFD_CLOEXEC = 1030;

    public LeanSocketHandle(int fd)
        : base(-1, ownsHandle: true) => SetHandle(fd);

    public override bool IsInvalid => handle < 0;

    protected override bool ReleaseHandle() => SysClose((int)handle) == 0;

    /// <summary>
    /// Holds <paramref name="handle"/>'s descriptor open, so that it is not closed (and its number not reused by another
    /// socket) during a system call: false, with no hold, when the handle is already closed. Every system call on a lean
    /// socket goes between this and <see cref="SafeHandle.DangerousRelease"/>.
    /// </summary>
    public static bool TryAcquire(SafeHandle handle, out int fd)
    {
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
        }

        fd = added ? (int)handle.DangerousGetHandle() : -1;
        return added;
    }

    /// <summary>
    /// <c>accept4</c> on <paramref name="listener"/> (non-blocking): the new descriptor (left in blocking mode, as
    /// the transport sends and receives with <c>MSG_DONTWAIT</c>) and the peer's address, or -1 with the errno.
    /// </summary>
    public static int Accept(SafeHandle listener, out PeerAddress peer, out int errno)
    {
        peer = default;
        if (!TryAcquire(listener, out int listenFd))
        {
            errno = Errno.EBADF; // the listener is closed
            return -1;
        }

        try
        {
            byte* address = stackalloc byte[128];
            while (true)
            {
                int length = 128;
                int fd = SysAccept4(listenFd, address, &length, SOCK_CLOEXEC);
                if (fd >= 0)
                {
                    errno = 0;
                    peer = PeerAddress.From(new ReadOnlySpan<byte>(address, Math.Min(length, 128)));
                    return fd;
                }

                errno = Marshal.GetLastPInvokeError();
                if (errno != Errno.EINTR)
                {
                    return -1;
                }
            }
        }
        finally
        {
            listener.DangerousRelease();
        }
    }

    /// <summary><c>shutdown</c>; false when the socket is already closed or not connected.</summary>
    public bool Shutdown(SocketShutdown how)
    {
        if (!TryAcquire(this, out int fd))
        {
            return false;
        }

        try
        {
            return SysShutdown(fd, (int)how) == 0;
        }
        finally
        {
            DangerousRelease();
        }
    }

    /// <summary>The local address (<c>getsockname</c>), or null once the socket is closed.</summary>
    public IPEndPoint? LocalEndPoint()
    {
        if (!TryAcquire(this, out int fd))
        {
            return null;
        }

        try
        {
            byte* address = stackalloc byte[128];
            int length = 128;
            return SysGetSockName(fd, address, &length) == 0
                ? PeerAddress.From(new ReadOnlySpan<byte>(address, Math.Min(length, 128))).ToEndPoint()
                : null;
        }
        finally
        {
            DangerousRelease();
        }
    }

    /// <summary>
    /// A <see cref="Socket"/> on a duplicate of the descriptor (the same connection; closing either descriptor leaves the
    /// other open). Throws <see cref="ObjectDisposedException"/> once this handle is closed.
    /// </summary>
    public Socket CreateSocket()
    {
        ObjectDisposedException.ThrowIf(!TryAcquire(this, out int fd), this);
        try
        {
            int duplicate = SysFcntlDupCloexec(fd, F_DUPFD_CLOEXEC, 0);
            if (duplicate < 0)
            {
                throw new SocketException((int)LeanEpoll.ToSocketError(Marshal.GetLastPInvokeError()));
            }

            try
            {
                return new Socket(new SafeSocketHandle(duplicate, ownsHandle: true));
            }
            catch
            {
                SysClose(duplicate);
                throw;
            }
        }
        finally
        {
            DangerousRelease();
        }
    }

    /// <summary>
    /// A peer's IP address and port in 24 bytes, made into an <see cref="IPEndPoint"/> only when asked (logs, the connection
    /// gate): an IPv4 address as a number, an IPv6 one as its bytes' two halves.
    /// </summary>
    internal readonly struct PeerAddress
    {
        private readonly ulong _high;
        private readonly ulong _low;
        private readonly uint _scope;
        private readonly ushort _port;
        private readonly byte _family;

        private PeerAddress(byte family, ulong high, ulong low, uint scope, ushort port)
        {
            _family = family;
            _high = high;
            _low = low;
            _scope = scope;
            _port = port;
        }

        /// <summary>From a <c>sockaddr_in</c> or <c>sockaddr_in6</c>; empty for any other family.</summary>
        public static PeerAddress From(ReadOnlySpan<byte> address)
        {
            if (address.Length >= 8 && BinaryPrimitives.ReadUInt16LittleEndian(address) == AF_INET)
            {
                return new PeerAddress(AF_INET, 0, BinaryPrimitives.ReadUInt32LittleEndian(address[4..]), 0, BinaryPrimitives.ReadUInt16BigEndian(address[2..]));
            }

            if (address.Length >= 28 && BinaryPrimitives.ReadUInt16LittleEndian(address) == AF_INET6)
            {
                return new PeerAddress(AF_INET6, BinaryPrimitives.ReadUInt64LittleEndian(address[8..]), BinaryPrimitives.ReadUInt64LittleEndian(address[16..]),
                    BinaryPrimitives.ReadUInt32LittleEndian(address[24..]), BinaryPrimitives.ReadUInt16BigEndian(address[2..]));
            }

            return default;
        }

        public IPEndPoint? ToEndPoint()
        {
            switch (_family)
            {
                case AF_INET:
                    return new IPEndPoint(new IPAddress((long)_low), _port);
                case AF_INET6:
                    Span<byte> bytes = stackalloc byte[16];
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes, _high);
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes[8..], _low);
                    return new IPEndPoint(new IPAddress(bytes, _scope), _port);
                default:
                    return null;
            }
        }
    }

    /// <summary>The process's soft open-file limit (<c>RLIMIT_NOFILE</c>); <see cref="int.MaxValue"/> when unlimited or unknown.</summary>
    public static int DescriptorLimit()
    {
        ResourceLimit limit;
        return SysGetRLimit(RLimitNoFile, &limit) == 0 && limit.Current < int.MaxValue ? (int)limit.Current : int.MaxValue;
    }

    /// <summary>
    /// The lowest free descriptor number, which the kernel gives to the next open or accept (opened on <c>/dev/null</c>
    /// and closed again); -1 when none is free.
    /// </summary>
    public static int LowestFreeDescriptor()
    {
        int fd = SysOpen("/dev/null", OpenReadOnlyCloexec);
        if (fd >= 0)
        {
            SysClose(fd);
        }

        return fd;
    }

    private const int RLimitNoFile = 7;
    private const int OpenReadOnlyCloexec = 0x80000; // O_RDONLY | O_CLOEXEC

    private struct ResourceLimit
    {
        public ulong Current;
        public ulong Maximum;
    }

    [LibraryImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static partial int SysGetRLimit(int resource, ResourceLimit* limit);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SysOpen(string path, int flags);

    [LibraryImport("libc", EntryPoint = "accept4", SetLastError = true)]
    private static partial int SysAccept4(int fd, byte* address, int* length, int flags);

    [LibraryImport("libc", EntryPoint = "shutdown", SetLastError = true)]
    private static partial int SysShutdown(int fd, int how);

    [LibraryImport("libc", EntryPoint = "getsockname", SetLastError = true)]
    private static partial int SysGetSockName(int fd, byte* address, int* length);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int SysFcntlDupCloexec(int fd, int command, int minimum);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int SysClose(int fd);
}
