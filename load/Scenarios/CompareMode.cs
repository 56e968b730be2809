using System.Globalization;
using System.Text.Json;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>compare</c>: runs <c>mqtt-publish</c> (same options) against two targets alternately, <c>--rounds</c>
/// rounds of (A, B), then prints each target's median acked msgs/s, PUBACK p50 and p99 and the ratios A/B.
/// </summary>
public static class CompareMode
{
    public const string Help = """
          compare        --a HOST:PORT --b HOST:PORT [--a-name ours --b-name other] [--rounds 3] [--pause 1s]
                         [--json out.json] + any mqtt-publish options (same for both; not --host/--port/--json/--html);
                         prints the medians per target and the ratios A/B of acked msgs/s, p50 and p99
        """;

    /// <summary>The options compare itself takes; everything else goes to mqtt-publish unchanged.</summary>
    private static readonly HashSet<string> Own = ["a", "b", "a-name", "b-name", "rounds", "pause", "json"];

    private static readonly HashSet<string> Forbidden = ["host", "port", "html", "assert", "max-error-rate", "min-rate", "max-p99"];

    public sealed record Target(string Name, string Host, int Port);

    public sealed record Settings(Target A, Target B, int Rounds, TimeSpan Pause, string? JsonPath, IReadOnlyList<string> PublishArgs);

    /// <summary>One run's figures (latencies in ms; NaN when the run recorded none).</summary>
    public readonly record struct Sample(double Rate, double P50, double P99);

    /// <summary>A target's medians over its rounds.</summary>
    public readonly record struct Medians(double Rate, double P50, double P99);

    /// <summary>Splits the command line into compare's own options and the mqtt-publish options it forwards.</summary>
    public static Settings Parse(IReadOnlyList<string> args)
    {
        var own = new List<string>();
        var forward = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length <= 2)
            {
                throw new OptionsException($"Unexpected argument '{arg}'.");
            }

            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            var name = eq > 0 ? arg[2..eq] : arg[2..];
            if (Forbidden.Contains(name))
            {
                throw new OptionsException($"compare: --{name} is not allowed (targets are --a/--b; thresholds do not apply to a comparison).");
            }

            var destination = Own.Contains(name) ? own : forward;
            destination.Add(arg);
            if (eq < 0 && i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
            {
                destination.Add(args[++i]);
            }
        }

        var o = new Options(own);
        var a = ParseTarget("a", o.StringOrNull("a") ?? throw new OptionsException("compare needs --a HOST:PORT."), o.String("a-name", "A"));
        var b = ParseTarget("b", o.StringOrNull("b") ?? throw new OptionsException("compare needs --b HOST:PORT."), o.String("b-name", "B"));
        var rounds = o.Int("rounds", 3, 1, 100);
        var pause = o.Duration("pause", TimeSpan.FromSeconds(1));
        var json = o.StringOrNull("json");
        o.ThrowIfUnused();

        if (a.Name == b.Name)
        {
            throw new OptionsException("compare: --a-name and --b-name must differ.");
        }

        return new Settings(a, b, rounds, pause, json, forward);
    }

    public static Target ParseTarget(string option, string text, string name)
    {
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            throw new OptionsException($"--{option}: expected HOST:PORT, got '{text}'.");
        }

        var host = text[..colon].Trim('[', ']');
        return new Target(name, host, port);
    }

    /// <summary>The median (mean of the middle two for an even count); NaN values are ignored, NaN if none remain.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Where(v => !double.IsNaN(v)).Order().ToArray();
        if (sorted.Length == 0)
        {
            return double.NaN;
        }

        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    public static Medians MediansOf(IReadOnlyCollection<Sample> samples) =>
        new(Median(samples.Select(s => s.Rate)), Median(samples.Select(s => s.P50)), Median(samples.Select(s => s.P99)));

    /// <summary>a / b; NaN when either is NaN or b is 0.</summary>
    public static double Ratio(double a, double b) => double.IsNaN(a) || double.IsNaN(b) || b == 0 ? double.NaN : a / b;

    public static Medians Ratios(Medians a, Medians b) => new(Ratio(a.Rate, b.Rate), Ratio(a.P50, b.P50), Ratio(a.P99, b.P99));

    public static async Task<int> RunAsync(IReadOnlyList<string> args, CancellationToken cancellation)
    {
        var s = Parse(args);
        var samples = new Dictionary<string, List<Sample>> { [s.A.Name] = [], [s.B.Name] = [] };
        var directory = Directory.CreateTempSubdirectory("perf-load-compare-");
        var failedRuns = 0;
        try
        {
            for (var round = 1; round <= s.Rounds && !cancellation.IsCancellationRequested; round++)
            {
                foreach (var target in new[] { s.A, s.B })
                {
                    Console.Error.WriteLine($"== round {round}/{s.Rounds}: mqtt-publish against {target.Name} ({target.Host}:{target.Port})");
                    var json = Path.Combine(directory.FullName, $"{target.Name}-{round}.json");
                    var runArgs = s.PublishArgs.Concat(["--host", target.Host, "--port", target.Port.ToString(CultureInfo.InvariantCulture), "--json", json]);
                    var code = await MqttPublishScenario.RunAsync(new Options(runArgs), cancellation);
                    if (code != 0 || !File.Exists(json))
                    {
                        failedRuns++;
                        Console.Error.WriteLine($"   run against {target.Name} exited {code}");
                    }

                    if (File.Exists(json))
                    {
                        samples[target.Name].Add(ReadSample(await File.ReadAllTextAsync(json, cancellation)));
                    }

                    if (s.Pause > TimeSpan.Zero)
                    {
                        await Task.Delay(s.Pause, cancellation);
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("interrupted: comparing the rounds run so far");
        }
        finally
        {
            directory.Delete(recursive: true);
        }

        var a = MediansOf(samples[s.A.Name]);
        var b = MediansOf(samples[s.B.Name]);
        var ratios = Ratios(a, b);
        WriteTable(Console.Out, s, samples, a, b, ratios);
        if (s.JsonPath is not null)
        {
            WriteJson(s.JsonPath, s, samples, a, b, ratios);
            Console.WriteLine($"   json: {s.JsonPath}");
        }

        // Exit 1 when a run failed or a target acknowledged nothing (e.g. a broker that refused the tokens).
        return failedRuns == 0 && a.Rate > 0 && b.Rate > 0 ? 0 : 1;
    }

    /// <summary>Reads rate, latencyMs.p50 and latencyMs.p99 from a scenario's <c>--json</c> file.</summary>
    public static Sample ReadSample(string json)
    {
        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        var rate = root.GetProperty("rate").GetDouble();
        if (root.TryGetProperty("latencyMs", out var latency))
        {
            return new Sample(rate, latency.GetProperty("p50").GetDouble(), latency.GetProperty("p99").GetDouble());
        }

        return new Sample(rate, double.NaN, double.NaN);
    }

    private static string F(double value, string format) =>
        double.IsNaN(value) ? "-" : value.ToString(format, CultureInfo.InvariantCulture);

    private static void WriteTable(TextWriter o, Settings s, Dictionary<string, List<Sample>> samples, Medians a, Medians b, Medians ratios)
    {
        o.WriteLine();
        o.WriteLine($"== compare: mqtt-publish {string.Join(' ', s.PublishArgs)}; {s.Rounds} rounds, alternating ==");
        o.WriteLine("   | target | round | acked msgs/s | p50 ms | p99 ms |");
        o.WriteLine("   |---|---:|---:|---:|---:|");
        foreach (var target in new[] { s.A, s.B })
        {
            var round = 0;
            foreach (var x in samples[target.Name])
            {
                o.WriteLine($"   | {target.Name} | {++round} | {F(x.Rate, "N0")} | {F(x.P50, "F3")} | {F(x.P99, "F3")} |");
            }
        }

        o.WriteLine($"   | {s.A.Name} median | | {F(a.Rate, "N0")} | {F(a.P50, "F3")} | {F(a.P99, "F3")} |");
        o.WriteLine($"   | {s.B.Name} median | | {F(b.Rate, "N0")} | {F(b.P50, "F3")} | {F(b.P99, "F3")} |");
        o.WriteLine($"   | ratio {s.A.Name}/{s.B.Name} | | {F(ratios.Rate, "F3")} | {F(ratios.P50, "F3")} | {F(ratios.P99, "F3")} |");
        o.WriteLine("   (rate ratio > 1: A acks more; latency ratio < 1: A answers faster)");
    }

    private static void WriteJson(string path, Settings s, Dictionary<string, List<Sample>> samples, Medians a, Medians b, Medians ratios)
    {
        using var stream = File.Create(path);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        void Number(string name, double value)
        {
            if (double.IsNaN(value))
            {
                w.WriteNull(name);
            }
            else
            {
                w.WriteNumber(name, value);
            }
        }

        void Figures(string? name, Medians m)
        {
            if (name is null)
            {
                w.WriteStartObject();
            }
            else
            {
                w.WriteStartObject(name);
            }

            Number("rate", m.Rate);
            Number("p50", m.P50);
            Number("p99", m.P99);
            w.WriteEndObject();
        }

        w.WriteStartObject();
        w.WriteString("scenario", "compare");
        w.WriteNumber("rounds", s.Rounds);
        w.WriteString("publishArgs", string.Join(' ', s.PublishArgs));
        foreach (var (key, target, medians) in new[] { ("a", s.A, a), ("b", s.B, b) })
        {
            w.WriteStartObject(key);
            w.WriteString("name", target.Name);
            w.WriteString("target", $"{target.Host}:{target.Port}");
            w.WriteStartArray("runs");
            foreach (var x in samples[target.Name])
            {
                Figures(null, new Medians(x.Rate, x.P50, x.P99));
            }

            w.WriteEndArray();
            Figures("median", medians);
            w.WriteEndObject();
        }

        Figures("ratio", ratios);
        w.WriteEndObject();
    }
}
