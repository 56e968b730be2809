using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading.Tasks.Sources;

namespace Perf.Load.Wire;

/// <summary>
/// One lane of a connect storm: opens sockets one after another and completes CONNECT / CONNACK on each,
/// reusing one <see cref="SocketAsyncEventArgs"/> and one 4-byte receive buffer for every handshake of
/// the lane. Compared with <see cref="MqttHandshake.ConnectAsync"/> (a Task per attempt, a linked
/// cancellation source and a timer per attempt, a fresh buffer per CONNACK), the generator's own cost per
/// connect is a socket and the kernel's work. Timeouts and cancellation come from outside: a watchdog
/// calls <see cref="AbortIfStarted"/>, which closes the socket of a handshake that started before a
/// given time, so the pending operation fails at once.
/// </summary>
public sealed class MqttConnector : IDisposable
{
    private readonly EndPoint _endPoint;
    private readonly Args _args = new();
    private readonly byte[] _connAck = new byte[4];
    private Socket? _current;
    private long _startedAt;

    public MqttConnector(EndPoint endPoint)
    {
        _endPoint = endPoint;
        _args.RemoteEndPoint = endPoint;
    }

    /// <summary>Returns the connected socket, or throws (refused, CONNACK code, closed, aborted by the watchdog).</summary>
    public async ValueTask<Socket> ConnectAsync(byte[] connectPacket)
    {
        var socket = new Socket(_endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        lock (this)
        {
            _current = socket;
            _startedAt = Stopwatch.GetTimestamp();
        }

        try
        {
            _args.SetBuffer(null, 0, 0);
            Check(await Run(socket, static (s, a) => s.ConnectAsync(a)), "connect");
            _args.SetBuffer(connectPacket, 0, connectPacket.Length);
            var sent = 0;
            while (sent < connectPacket.Length)
            {
                _args.SetBuffer(sent, connectPacket.Length - sent);
                Check(await Run(socket, static (s, a) => s.SendAsync(a)), "send");
                sent += _args.BytesTransferred;
            }

            _args.SetBuffer(_connAck, 0, _connAck.Length);
            var read = 0;
            while (read < _connAck.Length)
            {
                _args.SetBuffer(read, _connAck.Length - read);
                Check(await Run(socket, static (s, a) => s.ReceiveAsync(a)), "receive");
                if (_args.BytesTransferred == 0)
                {
                    throw new IOException("Connection closed before CONNACK.");
                }

                read += _args.BytesTransferred;
            }

            if (_connAck[0] >> 4 != MqttWire.ConnAckType)
            {
                throw new IOException($"Expected CONNACK, got packet type {_connAck[0] >> 4}.");
            }

            if (_connAck[3] != 0)
            {
                throw new IOException($"CONNACK refused with return code {_connAck[3]}.");
            }

            lock (this)
            {
                if (!ReferenceEquals(_current, socket))
                {
                    // The watchdog closed it just as the handshake finished.
                    throw new IOException("Handshake aborted (timed out or interrupted).");
                }

                _current = null;
            }

            return socket;
        }
        catch (Exception e)
        {
            bool aborted;
            lock (this)
            {
                // The watchdog took the socket (nulled _current) when it closed it: the pending operation failed for that.
                aborted = !ReferenceEquals(_current, socket);
                _current = null;
            }

            socket.Dispose();
            if (aborted || e is ObjectDisposedException)
            {
                // A handshake the watchdog closed fails with whatever the pending operation saw; name the cause.
                throw new IOException("Handshake aborted (timed out or interrupted).", e);
            }

            throw;
        }
    }

    /// <summary>The watchdog: closes the handshake in progress if it started before <paramref name="startedBefore"/> (Stopwatch ticks).</summary>
    public void AbortIfStarted(long startedBefore)
    {
        Socket? victim = null;
        lock (this)
        {
            if (_current is not null && _startedAt < startedBefore)
            {
                victim = _current;
                _current = null;
            }
        }

        victim?.Dispose();
    }

    public void Dispose() => _args.Dispose();

    private ValueTask<SocketError> Run(Socket socket, Func<Socket, SocketAsyncEventArgs, bool> start)
    {
        _args.Reset();
        return start(socket, _args) ? _args.Task : new ValueTask<SocketError>(_args.SocketError);
    }

    private static void Check(SocketError error, string step)
    {
        if (error != SocketError.Success)
        {
            throw new SocketException((int)error, $"{step} failed: {error}");
        }
    }

    /// <summary>Event args awaited as a <see cref="ValueTask{SocketError}"/>; continuations run where the socket completes.</summary>
    private sealed class Args : SocketAsyncEventArgs, IValueTaskSource<SocketError>
    {
        private ManualResetValueTaskSourceCore<SocketError> _core;

        public Args()
            : base(unsafeSuppressExecutionContextFlow: true)
        {
        }

        public ValueTask<SocketError> Task => new(this, _core.Version);

        public void Reset() => _core.Reset();

        protected override void OnCompleted(SocketAsyncEventArgs e) => _core.SetResult(e.SocketError);

        public SocketError GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
