using System.Buffers;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Perf.Kestrel.Tcp.Internal;

namespace Perf.Kestrel.Tcp;

/// <summary>
/// The TCP integration door: owns one raw TCP connection, frames its byte stream into messages
/// and hands each frame on. Closes cleanly on EOF and on a frame longer than the limit.
/// </summary>
public sealed class TcpIntegrationHandler : ConnectionHandler
{
    private readonly ILogger<TcpIntegrationHandler> _logger;
    private readonly TcpIntegrationOptions _options;

    public TcpIntegrationHandler(ILogger<TcpIntegrationHandler> logger, IOptions<TcpIntegrationOptions> options)
    {
        _logger = logger;
        _options = options.Value;
    }

    public override async Task OnConnectedAsync(ConnectionContext connection)
    {
        TcpLog.Connected(_logger, connection.ConnectionId, connection.RemoteEndPoint?.ToString());
        var input = connection.Transport.Input;
        long frames = 0;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(connection.ConnectionClosed);
                var buffer = result.Buffer;
                var reader = new SequenceReader<byte>(buffer);
                while (reader.TryReadTo(out ReadOnlySequence<byte> frame, (byte)'\n'))
                {
                    if (frame.Length > _options.MaxFrameLength)
                    {
                        TcpLog.FrameTooLong(_logger, connection.ConnectionId, frame.Length, _options.MaxFrameLength);
                        return;
                    }

                    frames++;
                }

                if (reader.Remaining > _options.MaxFrameLength)
                {
                    // Limits before buffering: an unterminated frame longer than the limit never completes.
                    TcpLog.FrameTooLong(_logger, connection.ConnectionId, reader.Remaining, _options.MaxFrameLength);
                    return;
                }

                input.AdvanceTo(reader.Position, buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The peer or the host closed the connection.
        }
        catch (ConnectionResetException)
        {
            // The peer reset the connection: an ordinary end for a raw TCP device.
        }
        finally
        {
            TcpLog.Disconnected(_logger, connection.ConnectionId, frames);
        }
    }
}
