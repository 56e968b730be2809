using System.Collections.Concurrent;
using Perf.Core;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Tcp.Tests;

/// <summary>The door's seam, recording what crossed it; assigns a stable id per device name like auto-creation does.</summary>
internal sealed class RecordingUplinkSink : ITcpUplinkSink
{
    private readonly ConcurrentDictionary<string, Guid> _devices = new(StringComparer.Ordinal);

    public record Uplink(string DeviceName, string DeviceType, bool AllowCreate, TsKvEntry[] Telemetry, KvEntry[] Attributes);

    public ConcurrentQueue<Uplink> Uplinks { get; } = new();
    public ConcurrentQueue<IDeviceSession> Opened { get; } = new();
    public ConcurrentQueue<IDeviceSession> Closed { get; } = new();

    /// <summary>Complete publishes asynchronously (as a group commit would).</summary>
    public bool Async { get; init; }

    /// <summary>Reject uplinks of this device name.</summary>
    public string? Reject { get; init; }

    public async ValueTask<TcpUplinkResult> PublishAsync(TcpUplink uplink)
    {
        // Copy synchronously, before the first await: the door reuses the uplink.
        var copy = new Uplink(uplink.DeviceName, uplink.DeviceType, uplink.AllowCreateDevices, [.. uplink.Telemetry], [.. uplink.Attributes]);
        if (copy.DeviceName != Reject)
        {
            Uplinks.Enqueue(copy);
        }

        if (Async)
        {
            await Task.Delay(5);
        }

        if (copy.DeviceName == Reject)
        {
            return TcpUplinkResult.Fail(UplinkStatus.NotFound, "device not found");
        }

        return TcpUplinkResult.Ok(_devices.GetOrAdd(copy.DeviceName, _ => Guid.NewGuid()));
    }

    public void OnSessionOpened(IDeviceSession session) => Opened.Enqueue(session);

    public void OnSessionClosed(IDeviceSession session) => Closed.Enqueue(session);
}
