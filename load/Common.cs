namespace Perf.Load;

/// <summary>Options every scenario shares: target, duration, outputs and the thresholds that set the exit code.</summary>
public sealed record CommonOptions(
    string Host,
    int Port,
    TimeSpan Duration,
    string? JsonPath,
    string? HtmlPath,
    double? MaxErrorRate,
    double? MinRate,
    double? MaxP99Ms,
    Assertions? Assert = null)
{
    public static CommonOptions Read(Options o, int defaultPort) => new(
        o.String("host", "127.0.0.1"),
        o.Int("port", defaultPort, 1, 65535),
        o.Duration("duration", TimeSpan.FromSeconds(10)),
        o.StringOrNull("json"),
        o.StringOrNull("html"),
        o.DoubleOrNull("max-error-rate", 0),
        o.DoubleOrNull("min-rate", 0),
        o.DoubleOrNull("max-p99", 0),
        o.StringOrNull("assert") is { } expression ? Assertions.Parse(expression) : null);

    public string Target => $"{Host}:{Port}";

    /// <summary>Writes the summary and requested files; returns the exit code (0, or 1 when a threshold is violated).</summary>
    public int Finish(RunResult result)
    {
        Report.WriteSummary(result, Console.Out);
        if (JsonPath is not null)
        {
            Report.WriteJson(result, JsonPath);
            Console.WriteLine($"   json: {JsonPath}");
        }

        if (HtmlPath is not null)
        {
            Report.WriteHtml(result, HtmlPath);
            Console.WriteLine($"   html: {HtmlPath}");
        }

        var violations = Violations(result);
        foreach (var violation in violations)
        {
            Console.WriteLine("THRESHOLD VIOLATED: " + violation);
        }

        return violations.Count == 0 ? 0 : 1;
    }

    /// <summary>The thresholds <paramref name="result"/> violates (empty: exit code 0).</summary>
    public List<string> Violations(RunResult result)
    {
        var violations = new List<string>();
        if (MaxErrorRate is { } maxErrors && result.ErrorRate > maxErrors)
        {
            violations.Add($"error rate {result.ErrorRate:P3} > --max-error-rate {maxErrors:P3}");
        }

        if (MinRate is { } minRate && result.Rate < minRate)
        {
            violations.Add($"{result.RateName} {result.Rate:N0} < --min-rate {minRate:N0}");
        }

        if (MaxP99Ms is { } maxP99 && result.Latency is { TotalCount: > 0 } latency
            && Report.Ms(latency.GetValueAtPercentile(99)) is var p99 && p99 > maxP99)
        {
            violations.Add($"{result.LatencyName} p99 {p99:F3} ms > --max-p99 {maxP99:F3} ms");
        }

        if (Assert is not null)
        {
            violations.AddRange(Assert.Violations(result));
        }

        return violations;
    }
}
