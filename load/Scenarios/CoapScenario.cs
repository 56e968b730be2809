using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Perf.Load.Wire;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>coap</c>: confirmable POSTs of telemetry from <c>--connections</c> UDP sockets, <c>--window</c>
/// outstanding each. A request counts as acknowledged on its 2.01 (piggybacked or separate, whose CON is
/// ACKed back). No retransmission: a request unanswered after <c>--timeout</c> is an error and replaced.
/// </summary>
public static class CoapScenario
{
    public const string Help = """
          coap           --connections 10 --window 8 --payload 64 [--timeout 5s] [--port 5683]
        """;

    private const byte Created = 0x41; // 2.01

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var common = CommonOptions.Read(o, 5683);
        var connections = o.Int("connections", 10, 1, 10_000);
        var window = o.Int("window", 8, 1, 1024);
        var payloadSize = o.Int("payload", 64, 1, 60_000);
        var timeout = o.Duration("timeout", TimeSpan.FromSeconds(5));
        var tokens = await Tokens.FromOptionsAsync(o, cancellation);
        o.ThrowIfUnused();

        var endPoint = Targets.Resolve(common.Host, common.Port);
        var payload = MqttWire.JsonPayload(payloadSize);
        var latency = new LatencyRecorder();
        var result = new RunResult { Scenario = "coap", Target = common.Target, RateName = "2.01 acks/s", LatencyName = "2.01 latency" };
        result.Parameter("connections", connections);
        result.Parameter("window", window);
        result.Parameter("payload", payloadSize);
        result.Parameter("duration", common.Duration.TotalSeconds + "s");
        result.Parameter("tokens", tokens.Describe());

        var clients = Enumerable.Range(0, connections)
            .Select(i => new CoapClient(i, endPoint, CoapWire.ConfirmablePost(tokens.For(i), payload), window, latency))
            .ToArray();
        var monitor = new ProgressMonitor(() => clients.Select(c => c.Counters), "2.01", common.Duration);
        var clock = Stopwatch.StartNew();
        var receivers = clients.Select(c => Task.Run(c.ReceiveLoopAsync)).ToArray();
        foreach (var c in clients)
        {
            c.SendAll();
        }

        var timeoutTicks = (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        using var sweep = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        try
        {
            while (clock.Elapsed < common.Duration && await sweep.WaitForNextTickAsync(cancellation))
            {
                foreach (var c in clients)
                {
                    c.ExpireOlderThan(timeoutTicks);
                }
            }
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("interrupted: stopping early");
        }

        var elapsed = clock.Elapsed.TotalSeconds;
        var atStop = monitor.Totals();
        foreach (var c in clients)
        {
            c.Close();
        }

        await Task.WhenAll(receivers);
        await monitor.DisposeAsync();
        var totals = monitor.Totals();
        result.DurationSeconds = elapsed;
        result.Sent = totals.Sent;
        result.Acked = totals.Acked;
        result.Errors = totals.Errors;
        result.Rate = atStop.Acked / elapsed;
        result.Latency = latency.Merge();
        result.Series = monitor.Series;
        result.AddExtra("outstanding at end (not counted)", totals.Sent - totals.Acked - totals.Errors);
        return common.Finish(result);
    }

    /// <summary>One UDP socket with <c>window</c> slots; the token is (slot, generation) so stale answers are ignored.</summary>
    private sealed class CoapClient
    {
        private readonly int _index;
        private readonly Socket _socket;
        private readonly byte[] _template;
        private readonly int _window;
        private readonly LatencyRecorder _latency;
        private readonly long[] _sentAt;
        private readonly ushort[] _generation;
        private readonly ushort[] _messageId;
        private readonly Lock _gate = new();
        private ushort _nextMessageId;
        private volatile bool _closed;

        public CoapClient(int index, EndPoint endPoint, byte[] template, int window, LatencyRecorder latency)
        {
            _index = index;
            _template = template;
            _window = window;
            _latency = latency;
            _sentAt = new long[window];
            _generation = new ushort[window];
            _messageId = new ushort[window];
            _nextMessageId = (ushort)Random.Shared.Next(ushort.MaxValue);
            _socket = new Socket(endPoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
            _socket.Connect(endPoint);
        }

        public WorkerCounters Counters { get; } = new();

        public void SendAll()
        {
            for (var slot = 0; slot < _window; slot++)
            {
                Send(slot);
            }
        }

        public void ExpireOlderThan(long ticks)
        {
            var now = Stopwatch.GetTimestamp();
            for (var slot = 0; slot < _window; slot++)
            {
                bool expired;
                lock (_gate)
                {
                    expired = _sentAt[slot] != 0 && now - _sentAt[slot] > ticks;
                }

                if (expired)
                {
                    Interlocked.Increment(ref Counters.Errors);
                    Send(slot);
                }
            }
        }

        private void Send(int slot)
        {
            if (_closed)
            {
                return;
            }

            Span<byte> message = _template.Length <= 1024 ? stackalloc byte[_template.Length] : new byte[_template.Length];
            _template.CopyTo(message);
            lock (_gate)
            {
                var messageId = _nextMessageId++;
                var generation = ++_generation[slot];
                _messageId[slot] = messageId;
                _sentAt[slot] = Stopwatch.GetTimestamp();
                BinaryPrimitives.WriteUInt16BigEndian(message[CoapWire.MessageIdOffset..], messageId);
                BinaryPrimitives.WriteUInt16BigEndian(message[CoapWire.TokenOffset..], (ushort)slot);
                BinaryPrimitives.WriteUInt16BigEndian(message[(CoapWire.TokenOffset + 2)..], generation);
                Counters.Sent++;
            }

            try
            {
                _socket.Send(message);
            }
            catch (SocketException)
            {
                // ICMP unreachable from an earlier send surfaces here; the slot times out and is counted.
            }
        }

        public async Task ReceiveLoopAsync()
        {
            var buffer = new byte[65_536];
            var ack = new byte[4];
            while (!_closed)
            {
                int n;
                try
                {
                    n = await _socket.ReceiveAsync(buffer, SocketFlags.None);
                }
                catch (SocketException)
                {
                    continue; // port unreachable etc.: the slot's timeout counts it
                }
                catch (ObjectDisposedException)
                {
                    break;
                }

                if (!CoapWire.TryParseHeader(buffer.AsSpan(0, n), out var type, out var code, out var messageId, out var token))
                {
                    continue;
                }

                if (type == CoapWire.TypeConfirmable)
                {
                    // A separate response: acknowledge it (RFC 7252 §5.2.2).
                    CoapWire.EmptyAck(ack, messageId);
                    TrySend(ack);
                }

                if (code == 0 || token.Length != CoapWire.TokenLength)
                {
                    // Empty ACK (the response follows separately) or a reset: nothing to match by token.
                    if (type == CoapWire.TypeReset)
                    {
                        FailByMessageId(messageId);
                    }

                    continue;
                }

                var slot = BinaryPrimitives.ReadUInt16BigEndian(token);
                var generation = BinaryPrimitives.ReadUInt16BigEndian(token[2..]);
                long elapsed = 0;
                lock (_gate)
                {
                    if (slot < _window && _generation[slot] == generation && _sentAt[slot] != 0)
                    {
                        elapsed = Stopwatch.GetTimestamp() - _sentAt[slot];
                        _sentAt[slot] = 0;
                    }
                }

                if (elapsed == 0)
                {
                    continue; // stale (already timed out) or duplicate
                }

                if (code == Created)
                {
                    _latency.RecordTicks(_index, elapsed);
                    Counters.Acked++;
                }
                else
                {
                    Interlocked.Increment(ref Counters.Errors);
                }

                Send(slot);
            }
        }

        private void FailByMessageId(ushort messageId)
        {
            for (var slot = 0; slot < _window; slot++)
            {
                bool match;
                lock (_gate)
                {
                    match = _sentAt[slot] != 0 && _messageId[slot] == messageId;
                    if (match)
                    {
                        _sentAt[slot] = 0;
                    }
                }

                if (match)
                {
                    Interlocked.Increment(ref Counters.Errors);
                    Send(slot);
                }
            }
        }

        private void TrySend(byte[] datagram)
        {
            try
            {
                _socket.Send(datagram);
            }
            catch (SocketException)
            {
            }
        }

        public void Close()
        {
            _closed = true;
            _socket.Dispose();
        }
    }
}
