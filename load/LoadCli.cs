using Perf.Load.Scenarios;

namespace Perf.Load;

/// <summary>
/// The command line as a callable: <c>Program</c> runs it, and tests run a scenario in-process with it.
/// Exit codes: 0 ok, 1 a threshold violated (or nothing connected, or provisioning failed), 2 bad arguments.
/// </summary>
public static class LoadCli
{
    public static async Task<int> RunAsync(string[] args, CancellationToken cancellation)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            PrintUsage(Console.Out);
            return args.Length == 0 ? 2 : 0;
        }

        try
        {
            if (args[0] == "compare")
            {
                return await CompareMode.RunAsync(args[1..], cancellation);
            }

            var options = new Options(args.Skip(1));
            return args[0] switch
            {
                "mqtt-connect" => await MqttConnectScenario.RunAsync(options, cancellation),
                "mqtt-publish" => await MqttPublishScenario.RunAsync(options, cancellation),
                "rpc" => await RpcScenario.RunAsync(options, cancellation),
                "http" => await HttpScenario.RunAsync(options, cancellation),
                "tcp" => await TcpScenario.RunAsync(options, cancellation),
                "coap" => await CoapScenario.RunAsync(options, cancellation),
                "edge" => await EdgeScenario.RunAsync(options, cancellation),
                "crash" => await CrashScenario.RunAsync(options, cancellation),
                "soak" => await SoakScenario.RunAsync(options, cancellation),
                "bare-server" => await BareServer.RunAsync(options, cancellation),
                "durable-loop" => await DurableLoop.RunAsync(options, cancellation),
                _ => throw new OptionsException($"Unknown scenario '{args[0]}'."),
            };
        }
        catch (Exception e) when (e is HttpRequestException or System.Text.Json.JsonException or KeyNotFoundException or InvalidOperationException or TaskCanceledException or Grpc.Core.RpcException)
        {
            // Provisioning through the REST API failed: nothing was run.
            Console.Error.WriteLine($"Provisioning failed: {e.Message}");
            return 1;
        }
        catch (OptionsException e)
        {
            Console.Error.WriteLine(e.Message);
            Console.Error.WriteLine();
            PrintUsage(Console.Error);
            return 2;
        }
    }

    public static void PrintUsage(TextWriter o)
    {
        o.WriteLine("Perf.Load: load generator for the MQTT, REST RPC, HTTP, TCP, CoAP and edge gRPC doors (any MQTT 3.1.1 broker works too).");
        o.WriteLine();
        o.WriteLine("Usage: dotnet run -c Release --project load -- <scenario> [options]");
        o.WriteLine();
        o.WriteLine("Scenarios:");
        o.WriteLine(MqttConnectScenario.Help);
        o.WriteLine(MqttPublishScenario.Help);
        o.WriteLine(RpcScenario.Help);
        o.WriteLine(HttpScenario.Help);
        o.WriteLine(TcpScenario.Help);
        o.WriteLine(CoapScenario.Help);
        o.WriteLine(BareServer.Help);
        o.WriteLine(DurableLoop.Help);
        o.WriteLine(EdgeScenario.Help);
        o.WriteLine(CrashScenario.Help);
        o.WriteLine(SoakScenario.Help);
        o.WriteLine(CompareMode.Help);
        o.WriteLine();
        o.WriteLine("Common options:");
        o.WriteLine("  --host 127.0.0.1 --port <scenario default> --duration 10s");
        o.WriteLine("  --json out.json --html report.html");
        o.WriteLine("  --max-error-rate 0.001 --min-rate 50000 --max-p99 5 (ms)   (exit 1 when violated)");
        o.WriteLine("  --assert 'p99<5ms,rate>50000,error-rate<=0.1%'   metrics rate p50 p90 p99 p99.9 max mean errors error-rate acked sent;");
        o.WriteLine("      operators < <= > >= =; latency units us ms s (default ms)   (exit 1 when a clause fails)");
        o.WriteLine("Device tokens (MQTT username, HTTP/CoAP path):");
        o.WriteLine("  --tokens t1,t2,...  |  --token-prefix P (token i = P+i; default load-token-)");
        o.WriteLine("  --provision N --api http://127.0.0.1:8080 --user tenant@example.com --password tenant");
        o.WriteLine("      create (or reuse) devices load-0..load-N-1 with tokens P+i through the REST API first");
        o.WriteLine();
        o.WriteLine("Exit codes: 0 ok, 1 threshold violated, 2 bad arguments.");
    }
}
