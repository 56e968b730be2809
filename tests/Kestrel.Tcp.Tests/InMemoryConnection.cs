using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;

namespace Perf.Kestrel.Tcp.Tests;

/// <summary>A Kestrel connection over two in-memory pipes: the test plays the device on <see cref="Device"/>.</summary>
internal sealed class InMemoryConnection : ConnectionContext
{
    private readonly CancellationTokenSource _closed = new();

    public InMemoryConnection()
    {
        var toServer = new Pipe();
        var toDevice = new Pipe();
        Transport = new DuplexPipe(toServer.Reader, toDevice.Writer);
        Device = new DuplexPipe(toDevice.Reader, toServer.Writer);
    }

    /// <summary>The device's end: write uplinks to Output, read downlinks from Input.</summary>
    public IDuplexPipe Device { get; }

    public override IDuplexPipe Transport { get; set; }
    public override string ConnectionId { get; set; } = "test-" + Guid.NewGuid().ToString("N")[..8];
    public override IFeatureCollection Features { get; } = new FeatureCollection();
    public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();
    public override EndPoint? RemoteEndPoint { get; set; } = new IPEndPoint(IPAddress.Loopback, 40000);
    public override CancellationToken ConnectionClosed { get => _closed.Token; set { } }
    public bool Aborted { get; private set; }

    public override void Abort(ConnectionAbortedException abortReason)
    {
        Aborted = true;
        _closed.Cancel();
    }

    public override async ValueTask DisposeAsync()
    {
        _closed.Dispose();
        await base.DisposeAsync();
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
    }
}
