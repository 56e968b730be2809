using Perf.Core;

namespace Perf.EndToEnd;

/// <summary>Awaits a persistent RPC reaching a status through the core's change event (no polling).</summary>
internal static class PersistentRpcWaiter
{
    public static Task<PersistentRpc> StatusAsync(HostFixture fixture, string rpcId, PersistentRpcStatus status, int timeoutSeconds = 20)
    {
        var id = Guid.Parse(rpcId);
        var done = new TaskCompletionSource<PersistentRpc>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnChanged(PersistentRpc rpc)
        {
            if (rpc.Id == id && rpc.Status == status)
            {
                done.TrySetResult(rpc);
            }
        }

        var rpcService = fixture.Host.Engine.Rpc;
        rpcService.PersistentRpcChanged += OnChanged;
        if (rpcService.GetPersistent(id) is { } current && current.Status == status)
        {
            done.TrySetResult(current);
        }

        return done.Task.WaitAsync(TimeSpan.FromSeconds(timeoutSeconds)).ContinueWith(t =>
        {
            rpcService.PersistentRpcChanged -= OnChanged;
            return t.GetAwaiter().GetResult();
        }, TaskScheduler.Default);
    }
}
