using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using System.Runtime;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>bare-server</c>: the ceiling yardstick. A Kestrel <see cref="ConnectionHandler"/> that parses only
/// the MQTT fixed header and answers CONNACK to CONNECT and PUBACK to QoS 1 PUBLISH, nothing else (no
/// validation, no auth, no storage). Whatever a real server does costs on top of this.
/// </summary>
public static class BareServer
{
    public const string Help = """
          bare-server    [--host 127.0.0.1] [--port 1883] [--duration 0 = until Ctrl+C]
        """;

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var host = o.String("host", "127.0.0.1");
        var port = o.Int("port", 1883, 1, 65535);
        var duration = o.Duration("duration", TimeSpan.Zero);
        o.ThrowIfUnused();
        if (!IPAddress.TryParse(host, out var address))
        {
            throw new OptionsException($"--host: bare-server needs an IP address, got '{host}'.");
        }

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.Logging.AddConsole().SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
            kestrel.Listen(address, port, listen => listen.UseConnectionHandler<BareMqttConnectionHandler>()));
        await using var app = builder.Build();
        await app.StartAsync(cancellation);
        Console.WriteLine($"bare-server listening on {host}:{port} pid {Environment.ProcessId} (GC: {(GCSettings.IsServerGC ? "server" : "workstation")})");
        // Ends on Ctrl+C / SIGTERM (the host's lifetime), on the caller's cancellation, or after --duration.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation, app.Lifetime.ApplicationStopping);
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

        await app.StopAsync(CancellationToken.None);
        return 0;
    }
}

/// <summary>Answers CONNECT and QoS 1 PUBLISH; batches every answer of one read into one flush.</summary>
public sealed class BareMqttConnectionHandler : ConnectionHandler
{
    private static ReadOnlySpan<byte> ConnAckAccepted => [0x20, 0x02, 0x00, 0x00];

    public override async Task OnConnectedAsync(ConnectionContext connection)
    {
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
        catch (Exception e) when (e is ConnectionResetException or IOException or InvalidDataException or OperationCanceledException)
        {
            // Peer gone or garbage: close.
        }
    }

    private static SequencePosition Answer(ReadOnlySequence<byte> buffer, PipeWriter output, out bool wrote)
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

    private static void Write(PipeWriter output, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(output.GetSpan(bytes.Length));
        output.Advance(bytes.Length);
    }
}
