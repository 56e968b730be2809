using System.Buffers;
using System.Collections.Concurrent;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests;

internal sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "perf-core-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

internal static class Engines
{
    public static Task<PerfEngine> OpenAsync(string dir, Action<CoreOptions>? configure = null)
    {
        var options = new CoreOptions { DataDir = dir, CommitIntervalMs = 1 };
        configure?.Invoke(options);
        return PerfEngine.OpenAsync(options, NullLoggerFactory.Instance, CancellationToken.None);
    }

    public static ReadOnlySequence<byte> Json(string text) => new(Encoding.UTF8.GetBytes(text));

    public static async Task<(Guid Tenant, Perf.Core.Domain.Device Device, string Token)> CreateDeviceAsync(PerfEngine engine, string name = "dev-1", string? info = null)
    {
        var tenant = await engine.Registry.CreateTenantAsync("tenant");
        var device = await engine.Registry.CreateDeviceAsync(tenant.Value!.Id, name, additionalInfoJson: info);
        Assert.True(device.IsOk, device.Error);
        var token = engine.Registry.GetCredentials(device.Value!.Id)!.CredentialsId;
        return (tenant.Value.Id, device.Value, token);
    }
}

internal sealed class FakeSession(Guid deviceId, string transport = "MQTT", bool wantsRpc = true, bool wantsAttributes = true) : IDeviceSession
{
    private readonly TaskCompletionSource<string> _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<RpcRequest> _firstRpc = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _firstAttributes = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Guid DeviceId { get; } = deviceId;
    public string Transport { get; } = transport;
    public string ConnectionId { get; } = Guid.NewGuid().ToString("N")[..8];
    public bool WantsAttributeUpdates { get; set; } = wantsAttributes;
    public bool WantsRpc { get; set; } = wantsRpc;
    public bool AcceptRpc { get; set; } = true;

    public ConcurrentQueue<(KvEntry[] Updated, string[] Deleted)> AttributeUpdates { get; } = new();
    public ConcurrentQueue<RpcRequest> Rpcs { get; } = new();
    public Task<string> Closed => _closed.Task;
    public Task<RpcRequest> FirstRpc => _firstRpc.Task;
    public Task FirstAttributeUpdate => _firstAttributes.Task;

    public void PushAttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted)
    {
        AttributeUpdates.Enqueue(([.. updated], [.. deleted]));
        _firstAttributes.TrySetResult();
    }

    public bool PushRpcRequest(RpcRequest request)
    {
        if (!AcceptRpc)
        {
            return false;
        }
        Rpcs.Enqueue(request);
        _firstRpc.TrySetResult(request);
        return true;
    }

    public void Close(string reason) => _closed.TrySetResult(reason);
}
