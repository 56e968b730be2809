using BenchmarkDotNet.Attributes;
using Perf.Core;
using Perf.Core.Telemetry;

namespace Perf.Bench.Core;

/// <summary>
/// Session table lookups (every downlink does one) while other threads register and unregister sessions:
/// reads are lock-free and must not allocate. Only the uncontended case is in the allocation gate: the
/// MemoryDiagnoser counts process-wide bytes, so the churn thread's own registrations would be charged to reads.
/// </summary>
[BenchmarkCategory("Core", "Sessions")]
public class SessionTableBenchmarks
{
    private const int Devices = 10_000;
    private readonly SessionTable _table = new();
    private Guid[] _ids = [];
    private CancellationTokenSource? _churn;
    private Task? _churnTask;

    [Params(false, true)]
    public bool UnderContention { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _ids = new Guid[Devices];
        for (var i = 0; i < Devices; i++)
        {
            _ids[i] = Guid.NewGuid();
            _table.Register(new BenchSession(_ids[i]));
        }

        if (UnderContention)
        {
            _churn = new CancellationTokenSource();
            var token = _churn.Token;
            _churnTask = Task.Run(() =>
            {
                var i = 0;
                while (!token.IsCancellationRequested)
                {
                    var session = new BenchSession(_ids[i++ % Devices]);
                    _table.Register(session);
                    _table.Unregister(session);
                }
            });
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _churn?.Cancel();
        _churnTask?.Wait();
        _churn?.Dispose();
    }

    [Benchmark(OperationsPerInvoke = 1024)]
    public int GetSessions()
    {
        var found = 0;
        for (var i = 0; i < 1024; i++)
        {
            found += _table.GetSessions(_ids[(i * 7) % Devices]).Count;
        }

        return found;
    }

    private sealed class BenchSession(Guid deviceId) : IDeviceSession
    {
        public Guid DeviceId { get; } = deviceId;
        public string Transport => "BENCH";
        public string ConnectionId => "bench";
        public bool WantsAttributeUpdates => false;
        public bool WantsRpc => false;
        public void PushAttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted) { }
        public bool PushRpcRequest(RpcRequest request) => false;
        public void Close(string reason) { }
    }
}
