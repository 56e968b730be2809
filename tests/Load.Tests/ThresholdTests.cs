using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Perf.Load.Tests;

public sealed class ThresholdTests
{
    private static CommonOptions Thresholds(params string[] args) => CommonOptions.Read(new Options(args), 1883);

    private static RunResult Result(long acked, long errors, double rate, params long[] latencyMicros)
    {
        var r = new RunResult { Scenario = "s", Target = "t", Sent = acked + errors, Acked = acked, Errors = errors, Rate = rate };
        if (latencyMicros.Length > 0)
        {
            var h = LatencyRecorder.NewHistogram();
            foreach (var us in latencyMicros)
            {
                h.RecordValue(us);
            }

            r.Latency = h;
        }

        return r;
    }

    [Fact]
    public void No_thresholds_means_no_violation() =>
        Assert.Empty(Thresholds().Violations(Result(0, 1000, 0)));

    [Fact]
    public void Error_rate_is_checked_strictly_above_the_limit()
    {
        var t = Thresholds("--max-error-rate", "0.01");
        Assert.Empty(t.Violations(Result(99, 1, 10)));   // exactly 1%
        var v = Assert.Single(t.Violations(Result(98, 2, 10)));
        Assert.Contains("--max-error-rate", v, StringComparison.Ordinal);
    }

    [Fact]
    public void Min_rate_is_checked_strictly_below_the_limit()
    {
        var t = Thresholds("--min-rate", "50000");
        Assert.Empty(t.Violations(Result(1, 0, 50_000)));
        Assert.Contains("--min-rate", Assert.Single(t.Violations(Result(1, 0, 49_999.9))), StringComparison.Ordinal);
    }

    [Fact]
    public void Max_p99_reads_the_histogram_in_milliseconds()
    {
        var t = Thresholds("--max-p99", "5");
        var fast = Enumerable.Repeat(1_000L, 100).ToArray();                           // all 1 ms
        var slowTail = Enumerable.Repeat(1_000L, 98).Concat([9_000L, 9_000L]).ToArray(); // p99 9 ms
        Assert.Empty(t.Violations(Result(100, 0, 1, fast)));
        Assert.Contains("p99 9.0", Assert.Single(t.Violations(Result(100, 0, 1, slowTail))), StringComparison.Ordinal);
        Assert.Empty(t.Violations(Result(0, 0, 0))); // no latency samples: nothing to judge
    }

    [Fact]
    public void Every_violated_threshold_is_reported()
    {
        var t = Thresholds("--max-error-rate", "0", "--min-rate", "10", "--max-p99", "1");
        Assert.Equal(3, t.Violations(Result(10, 1, 5, 2_000, 2_000)).Count);
    }

    [Fact]
    public async Task Exit_code_2_for_bad_arguments_and_0_for_help()
    {
        Assert.Equal(2, await LoadCli.RunAsync([], CancellationToken.None));
        Assert.Equal(0, await LoadCli.RunAsync(["--help"], CancellationToken.None));
        Assert.Equal(2, await LoadCli.RunAsync(["no-such-scenario"], CancellationToken.None));
        Assert.Equal(2, await LoadCli.RunAsync(["tcp", "--conections", "3"], CancellationToken.None));
        Assert.Equal(2, await LoadCli.RunAsync(["tcp", "--duration", "soon"], CancellationToken.None));
        Assert.Equal(2, await LoadCli.RunAsync(["rpc", "--rpc-version", "v3"], CancellationToken.None));
    }

    [Fact]
    public async Task Exit_code_follows_the_thresholds_of_a_real_run()
    {
        // A TCP sink that reads and discards: the tcp scenario's lines/s is then bounded only by loopback.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var stop = new CancellationTokenSource();
        var sink = Task.Run(async () =>
        {
            var readers = new List<Task>();
            try
            {
                while (true)
                {
                    var client = await listener.AcceptTcpClientAsync(stop.Token);
                    readers.Add(Task.Run(async () =>
                    {
                        using (client)
                        {
                            var buffer = new byte[65536];
                            var stream = client.GetStream();
                            while (await stream.ReadAsync(buffer) > 0)
                            {
                            }
                        }
                    }));
                }
            }
            catch (OperationCanceledException)
            {
            }

            await Task.WhenAll(readers);
        });

        string[] Run(string minRate) => ["tcp", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--connections", "2", "--duration", "300ms", "--min-rate", minRate];
        var sw = Stopwatch.StartNew();
        Assert.Equal(0, await LoadCli.RunAsync(Run("1"), CancellationToken.None));
        Assert.Equal(1, await LoadCli.RunAsync(Run("1e15"), CancellationToken.None));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), "runs are bounded by --duration");
        await stop.CancelAsync();
        listener.Stop();
        await sink;
    }
}

public sealed class AssertionTests
{
    private static RunResult Result(long acked, long errors, double rate, params long[] latencyMicros)
    {
        var r = new RunResult { Scenario = "s", Target = "t", Sent = acked + errors, Acked = acked, Errors = errors, Rate = rate };
        if (latencyMicros.Length > 0)
        {
            var h = LatencyRecorder.NewHistogram();
            foreach (var us in latencyMicros)
            {
                h.RecordValue(us);
            }

            r.Latency = h;
        }

        return r;
    }

    [Fact]
    public void Latency_clauses_take_units_and_default_to_milliseconds()
    {
        var r = Result(100, 0, 60_000, Enumerable.Repeat(4_000L, 100).ToArray()); // 4 ms
        Assert.Empty(Assertions.Parse("p99<5ms, rate>50000").Violations(r));
        Assert.Empty(Assertions.Parse("p99<5").Violations(r));
        Assert.Empty(Assertions.Parse("p99<0.005s").Violations(r));
        Assert.Single(Assertions.Parse("p99<4000us").Violations(r));
        Assert.Empty(Assertions.Parse("p99<=4.01ms").Violations(r));
        Assert.Single(Assertions.Parse("max<3ms").Violations(r));
        Assert.Empty(Assertions.Parse("p50 > 3.9 ms, mean<4.1").Violations(r));
    }

    [Fact]
    public void Rate_error_and_count_clauses()
    {
        var r = Result(990, 10, 1_000);
        Assert.Empty(Assertions.Parse("rate>=1000,errors<=10,error-rate<=1%,error-rate<0.011,acked=990,sent>999").Violations(r));
        var broken = Assertions.Parse("rate>1000,errors=0,error-rate<1%").Violations(r).ToList();
        Assert.Equal(3, broken.Count);
        Assert.Contains("rate is 1000", broken[0], StringComparison.Ordinal);
    }

    [Fact]
    public void A_latency_clause_without_samples_fails() =>
        Assert.Contains("no latency samples", Assert.Single(Assertions.Parse("p99<5ms").Violations(Result(0, 0, 0))), StringComparison.Ordinal);

    [Theory]
    [InlineData("p99")]
    [InlineData("p42<5")]
    [InlineData("p99<fast")]
    [InlineData("<5")]
    [InlineData(",")]
    [InlineData("rate>5ms")]
    public void Malformed_expressions_are_bad_arguments(string expression) =>
        Assert.Throws<OptionsException>(() => Assertions.Parse(expression));

    [Fact]
    public async Task A_malformed_assert_exits_2() =>
        Assert.Equal(2, await LoadCli.RunAsync(["tcp", "--assert", "p99<<5"], CancellationToken.None));

    [Fact]
    public void Assert_joins_the_other_thresholds()
    {
        var common = CommonOptions.Read(new Options(["--min-rate", "10", "--assert", "errors=0"]), 1883);
        Assert.Equal(2, common.Violations(Result(1, 1, 5)).Count);
    }
}
