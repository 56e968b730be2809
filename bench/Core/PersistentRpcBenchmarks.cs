using BenchmarkDotNet.Attributes;
using Perf.Core;

namespace Perf.Bench.Core;

/// <summary>
/// Persistent RPC log transitions in a real engine (FASTER log, group commit) under a temporary data
/// directory. Every store mutation completes after the commit that holds it, and commits are spaced at
/// least <see cref="CoreOptions.CommitIntervalMs"/> (2 ms) apart, so one awaited transition costs about
/// one commit interval whatever the CPU work: <see cref="Transition_OneInFlight"/> shows that wait.
/// <see cref="Lifecycle_100InFlight"/> keeps 100 RPCs in flight so a commit carries 100 records, which is
/// the per-RPC cost of the log (QUEUED, SENT, DELIVERED, SUCCESSFUL, then removal). <c>Fsync=False</c>
/// drops write-through so the difference is the disk's share. The CPU-only part, the state machine every
/// transition is checked against, is <see cref="PersistentRpcStateMachineBenchmarks"/> (0 B/op, gated).
/// </summary>
[BenchmarkCategory("Core", "Rpc")]
public class PersistentRpcBenchmarks
{
    private const int InFlight = 100;

    private EngineFixture _fixture = null!;
    private IPersistentRpcStore _store = null!;
    private readonly Task<PersistentRpc?>[] _pending = new Task<PersistentRpc?>[InFlight];
    private readonly Guid[] _ids = new Guid[InFlight];
    private Guid _bouncing;

    [Params(true, false)]
    public bool Fsync { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _fixture = EngineFixture.OpenAsync(1, Fsync).GetAwaiter().GetResult();
        _store = _fixture.Engine.Rpc.Store;
        var rpc = _store.AddAsync(NewRpc()).GetAwaiter().GetResult()
            ?? throw new InvalidOperationException("the bench device does not exist");
        _bouncing = rpc.Id;
    }

    [GlobalCleanup]
    public void Cleanup() => _fixture.DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>QUEUED -> SENT -> QUEUED on one RPC (an unacknowledged attempt): two durable transitions, one at a time.</summary>
    [Benchmark(OperationsPerInvoke = 2)]
    public async Task<int> Transition_OneInFlight()
    {
        var sent = await _store.TransitionAsync(_bouncing, PersistentRpcStatus.Sent);
        var queued = await _store.TransitionAsync(_bouncing, PersistentRpcStatus.Queued);
        return sent!.Attempts + queued!.Attempts;
    }

    /// <summary>100 two-way RPCs through their whole life, each step for all 100 at once, then removed (TTL clean-up).</summary>
    [Benchmark(OperationsPerInvoke = InFlight)]
    public async Task<int> Lifecycle_100InFlight()
    {
        for (var i = 0; i < InFlight; i++)
        {
            var rpc = NewRpc();
            _ids[i] = rpc.Id;
            _pending[i] = _store.AddAsync(rpc);
        }

        await Task.WhenAll(_pending);
        await Step(PersistentRpcStatus.Sent, null);
        await Step(PersistentRpcStatus.Delivered, null);
        await Step(PersistentRpcStatus.Successful, """{"result":"ok"}""");
        return await _store.RemoveAsync(_ids);
    }

    private async Task Step(PersistentRpcStatus status, string? response)
    {
        for (var i = 0; i < InFlight; i++)
        {
            _pending[i] = _store.TransitionAsync(_ids[i], status, response);
        }

        foreach (var task in _pending)
        {
            if (await task is null)
            {
                throw new InvalidOperationException($"transition to {status} was refused");
            }
        }
    }

    private PersistentRpc NewRpc()
    {
        var device = _fixture.Devices[0];
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        return new PersistentRpc(Guid.NewGuid(), device.TenantId, device.Id, _store.NextRequestId(device.Id), now, now + 3_600_000,
            "setGpio", """{"pin":7,"value":1}""", OneWay: false, Retries: 5, Attempts: 0, PersistentRpcStatus.Queued, null, null, now);
    }
}
