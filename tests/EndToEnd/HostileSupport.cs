using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Perf.EndToEnd;

/// <summary>
/// Captures the in-process host's log lines (added to its logger factory after start). Its own filter
/// level comes from <c>Logging:Capture:LogLevel:*</c>, so it can see Debug while the console stays at Information.
/// </summary>
[ProviderAlias("Capture")]
internal sealed class LogCapture : ILoggerProvider
{
    private readonly ConcurrentQueue<(LogLevel Level, string Category, string Text)> _lines = new();

    public IReadOnlyList<(LogLevel Level, string Category, string Text)> Lines => _lines.ToArray();

    /// <summary>Log settings a host needs so <see cref="Attach"/> sees Debug lines.</summary>
    public static void Configure(Dictionary<string, string?> settings) => settings["Logging:Capture:LogLevel:Default"] = "Debug";

    public static LogCapture Attach(HostFixture fixture)
    {
        var capture = new LogCapture();
        fixture.Host.Services.GetRequiredService<ILoggerFactory>().AddProvider(capture);
        return capture;
    }

    /// <summary>A position in the log: <see cref="Count"/> with <c>since</c> looks only at lines after it.</summary>
    public int Mark() => _lines.Count;

    /// <summary>Lines of our own categories (Perf.*) at <paramref name="level"/> containing <paramref name="text"/>, after <paramref name="since"/>.</summary>
    public int Count(LogLevel level, string text, int since = 0) =>
        _lines.Skip(since).Count(l => l.Level == level && l.Category.StartsWith("Perf", StringComparison.Ordinal) && l.Text.Contains(text, StringComparison.Ordinal));

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private sealed class Logger(LogCapture owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._lines.Enqueue((logLevel, category, formatter(state, exception)));
    }
}

/// <summary>Raw sockets and hand-built MQTT packets for the hostile-connection tests (MQTTnet would not misbehave for us).</summary>
internal static class RawMqtt
{
    public static byte[] Connect(string? token, string clientId, ushort keepAlive = 60)
    {
        var body = new List<byte>();
        body.AddRange([0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x04]);
        body.Add((byte)(token is null ? 0x02 : 0x82)); // clean session (+ user name)
        body.Add((byte)(keepAlive >> 8));
        body.Add((byte)keepAlive);
        AddString(body, clientId);
        if (token is not null)
        {
            AddString(body, token);
        }

        return Packet(0x10, body);
    }

    public static byte[] Subscribe(ushort packetId, string filter, byte qos)
    {
        var body = new List<byte> { (byte)(packetId >> 8), (byte)packetId };
        AddString(body, filter);
        body.Add(qos);
        return Packet(0x82, body);
    }

    public static async Task<Socket> OpenAsync(int port, int? receiveBuffer = null)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (receiveBuffer is { } size)
        {
            socket.ReceiveBufferSize = size; // before connect, so the advertised window stays small
        }

        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        return socket;
    }

    /// <summary>
    /// Opens a connection the server may refuse at accept. The server's reset can reach the client before
    /// its connect completes (loopback, loaded machine); that is a refusal too, returned as null.
    /// </summary>
    public static async Task<Socket?> OpenOrRefusedAsync(int port)
    {
        try
        {
            return await OpenAsync(port);
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionRefused)
        {
            return null;
        }
    }

    /// <summary>Reads until <paramref name="count"/> bytes arrived; the CONNACK return code is byte 3.</summary>
    public static async Task<byte[]> ReadExactlyAsync(Socket socket, int count, TimeSpan timeout)
    {
        var buffer = new byte[count];
        using var cts = new CancellationTokenSource(timeout);
        int read = 0;
        while (read < count)
        {
            int n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, cts.Token);
            if (n == 0)
            {
                throw new IOException($"closed after {read} of {count} bytes");
            }

            read += n;
        }

        return buffer;
    }

    /// <summary>True when the server closes (FIN or reset) within <paramref name="timeout"/>; whatever it sends first is discarded.</summary>
    public static async Task<bool> ClosedWithinAsync(Socket socket, TimeSpan timeout)
    {
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token) > 0)
            {
            }

            return true;
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private static void AddString(List<byte> body, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        body.Add((byte)(bytes.Length >> 8));
        body.Add((byte)bytes.Length);
        body.AddRange(bytes);
    }

    private static byte[] Packet(byte header, List<byte> body)
    {
        var packet = new List<byte> { header };
        int length = body.Count;
        do
        {
            byte digit = (byte)(length % 128);
            length /= 128;
            packet.Add(length > 0 ? (byte)(digit | 0x80) : digit);
        }
        while (length > 0);
        packet.AddRange(body);
        return [.. packet];
    }
}

/// <summary>Hand-built CoAP requests (RFC 7252 §3) for datagram floods.</summary>
internal static class RawCoap
{
    /// <summary>A confirmable POST to <c>/api/v1/{token}/telemetry</c> with a JSON body.</summary>
    public static byte[] PostTelemetry(ushort messageId, string token, string json)
    {
        var message = new List<byte> { 0x40, 0x02, (byte)(messageId >> 8), (byte)messageId };
        bool first = true;
        foreach (var segment in new[] { "api", "v1", token, "telemetry" })
        {
            var bytes = Encoding.UTF8.GetBytes(segment);
            int delta = first ? 11 : 0; // Uri-Path
            first = false;
            if (bytes.Length < 13)
            {
                message.Add((byte)((delta << 4) | bytes.Length));
            }
            else
            {
                message.Add((byte)((delta << 4) | 13));
                message.Add((byte)(bytes.Length - 13));
            }

            message.AddRange(bytes);
        }

        message.Add(0xFF);
        message.AddRange(Encoding.UTF8.GetBytes(json));
        return [.. message];
    }

    /// <summary>Sends <paramref name="request"/> until an answer with its message id arrives; returns the response code byte.</summary>
    public static async Task<byte> ExchangeAsync(UdpClient client, IPEndPoint server, byte[] request, TimeSpan timeout)
    {
        ushort id = (ushort)((request[2] << 8) | request[3]);
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            await client.SendAsync(request, server);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            try
            {
                while (true)
                {
                    var answer = await client.ReceiveAsync(cts.Token);
                    var b = answer.Buffer;
                    if (b.Length < 4)
                    {
                        continue;
                    }

                    if (((b[2] << 8) | b[3]) == id && b[1] != 0)
                    {
                        return b[1]; // piggybacked response
                    }

                    if (((b[2] << 8) | b[3]) == id)
                    {
                        // Empty ACK: a busy server answers separately later (§5.2.2), with a new message id and our token.
                        cts.CancelAfter(timeout);
                        continue;
                    }

                    if (b[1] != 0 && SameToken(request, b))
                    {
                        if ((b[0] >> 4 & 0x3) == 0)
                        {
                            // A confirmable separate response: acknowledge it (empty ACK with its message id).
                            await client.SendAsync(new byte[] { 0x60, 0x00, b[2], b[3] }, server);
                        }

                        return b[1];
                    }
                }
            }
            catch (OperationCanceledException)
            {
                // Retransmit, as a CoAP client does (§4.2).
            }
        }

        throw new TimeoutException("no CoAP answer");
    }

    private static bool SameToken(byte[] request, byte[] answer)
    {
        int length = request[0] & 0x0F;
        return (answer[0] & 0x0F) == length && answer.Length >= 4 + length
            && request.AsSpan(4, length).SequenceEqual(answer.AsSpan(4, length));
    }
}

internal static class Memory
{
    /// <summary>Managed heap after a full collection, in MiB (the host runs in the test process).</summary>
    public static double HeapMiB()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(forceFullCollection: true) / (1024.0 * 1024.0);
    }
}
