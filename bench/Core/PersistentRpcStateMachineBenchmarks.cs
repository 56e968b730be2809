using BenchmarkDotNet.Attributes;
using Perf.Core;

namespace Perf.Bench.Core;

/// <summary>
/// The persistent RPC state machine every log transition is checked against when applied
/// (<see cref="PersistentRpc.IsAllowed"/>), without the log: pure CPU, 0 B/op. Its own class so the gate
/// does not open an engine for it.
/// </summary>
[BenchmarkCategory("Core", "Rpc")]
public class PersistentRpcStateMachineBenchmarks
{
    private static readonly PersistentRpcStatus[] Statuses = Enum.GetValues<PersistentRpcStatus>();

    /// <summary>Every (from, to, oneWay) pair of the state machine: 128 checks per operation.</summary>
    [Benchmark(OperationsPerInvoke = 128)]
    public int IsAllowed_EveryPair()
    {
        var allowed = 0;
        foreach (var from in Statuses)
        {
            foreach (var to in Statuses)
            {
                allowed += PersistentRpc.IsAllowed(from, to, oneWay: false) ? 1 : 0;
                allowed += PersistentRpc.IsAllowed(from, to, oneWay: true) ? 1 : 0;
            }
        }

        return allowed;
    }
}
