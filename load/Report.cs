using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using HdrHistogram;

namespace Perf.Load;

/// <summary>What a scenario measured; written as a stdout summary, JSON and a self-contained HTML page.</summary>
public sealed class RunResult
{
    public required string Scenario { get; init; }
    public required string Target { get; init; }
    public DateTimeOffset StartedUtc { get; init; } = DateTimeOffset.UtcNow;
    public double DurationSeconds { get; set; }
    public List<KeyValuePair<string, string>> Parameters { get; } = [];
    public long Sent { get; set; }
    public long Acked { get; set; }
    public long Errors { get; set; }

    /// <summary>The figure --min-rate checks, e.g. acknowledged messages per second.</summary>
    public double Rate { get; set; }
    public string RateName { get; set; } = "acked msgs/s";
    public string LatencyName { get; set; } = "ack latency";
    public LongHistogram? Latency { get; set; }
    public List<SeriesPoint> Series { get; set; } = [];

    /// <summary>Scenario-specific figures (e.g. server RSS per connection), in display order.</summary>
    public List<KeyValuePair<string, string>> Extra { get; } = [];

    public double ErrorRate => Sent + Errors == 0 ? 0 : (double)Errors / Math.Max(1, Acked + Errors);

    public void Parameter(string name, object value) => Parameters.Add(new(name, Convert.ToString(value, CultureInfo.InvariantCulture) ?? ""));

    public void AddExtra(string name, object value) => Extra.Add(new(name, Convert.ToString(value, CultureInfo.InvariantCulture) ?? ""));
}

public static class Report
{
    public static readonly (string Name, double Percentile)[] Percentiles =
        [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)];

    public static void WriteSummary(RunResult r, TextWriter o)
    {
        o.WriteLine();
        o.WriteLine($"== {r.Scenario} against {r.Target} ==");
        o.WriteLine("   " + string.Join("  ", r.Parameters.Select(p => $"{p.Key}={p.Value}")));
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"   duration   {r.DurationSeconds,12:F2} s"));
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"   sent       {r.Sent,12:N0}"));
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"   acked      {r.Acked,12:N0}"));
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"   errors     {r.Errors,12:N0}   (error rate {r.ErrorRate:P3})"));
        o.WriteLine(string.Create(CultureInfo.InvariantCulture, $"   {r.RateName,-10} {r.Rate,12:N0}"));
        if (r.Latency is { TotalCount: > 0 } h)
        {
            var percentiles = string.Join("  ", Percentiles.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Name} {Ms(h.GetValueAtPercentile(p.Percentile)):F3}")));
            o.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"   {r.LatencyName} (ms): {percentiles}  max {Ms(h.GetMaxValue()):F3}  mean {h.GetMean() / 1000:F3}  n={h.TotalCount:N0}"));
        }

        foreach (var (name, value) in r.Extra)
        {
            o.WriteLine($"   {name}: {value}");
        }
    }

    public static void WriteJson(RunResult r, string path)
    {
        using var stream = File.Create(path);
        using var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("scenario", r.Scenario);
        w.WriteString("target", r.Target);
        w.WriteString("startedUtc", r.StartedUtc);
        w.WriteNumber("durationSeconds", r.DurationSeconds);
        w.WriteStartObject("parameters");
        foreach (var (k, v) in r.Parameters)
        {
            w.WriteString(k, v);
        }

        w.WriteEndObject();
        w.WriteNumber("sent", r.Sent);
        w.WriteNumber("acked", r.Acked);
        w.WriteNumber("errors", r.Errors);
        w.WriteNumber("errorRate", r.ErrorRate);
        w.WriteString("rateName", r.RateName);
        w.WriteNumber("rate", r.Rate);
        if (r.Latency is { TotalCount: > 0 } h)
        {
            w.WriteStartObject("latencyMs");
            w.WriteString("name", r.LatencyName);
            w.WriteNumber("count", h.TotalCount);
            w.WriteNumber("mean", h.GetMean() / 1000);
            foreach (var (name, p) in Percentiles)
            {
                w.WriteNumber(name, Ms(h.GetValueAtPercentile(p)));
            }

            w.WriteNumber("max", Ms(h.GetMaxValue()));
            w.WriteEndObject();
        }

        w.WriteStartArray("series");
        foreach (var p in r.Series)
        {
            w.WriteStartObject();
            w.WriteNumber("elapsedSeconds", Math.Round(p.ElapsedSeconds, 3));
            w.WriteNumber("sent", p.Sent);
            w.WriteNumber("acked", p.Acked);
            w.WriteNumber("errors", p.Errors);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartObject("extra");
        foreach (var (k, v) in r.Extra)
        {
            w.WriteString(k, v);
        }

        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>One HTML file, no scripts or external resources: a table, an SVG line chart and SVG bars.</summary>
    public static void WriteHtml(RunResult r, string path)
    {
        var s = new StringBuilder();
        s.Append("<!doctype html><html><head><meta charset=\"utf-8\"><title>")
            .Append(E($"load {r.Scenario} {r.StartedUtc:u}"))
            .Append("</title><style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
                    + "td,th{border:1px solid #ccc;padding:.3em .7em;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
                    + "h2{margin-top:1.6em}.muted{color:#777}</style></head><body>");
        s.Append("<h1>").Append(E(r.Scenario)).Append(" &rarr; ").Append(E(r.Target)).Append("</h1>");
        s.Append("<p class=\"muted\">started ").Append(E(r.StartedUtc.ToString("u", CultureInfo.InvariantCulture)))
            .Append(" &middot; ").Append(E(string.Join("  ", r.Parameters.Select(p => $"{p.Key}={p.Value}")))).Append("</p>");

        s.Append("<h2>Summary</h2><table>");
        Row(s, "duration (s)", r.DurationSeconds.ToString("F2", CultureInfo.InvariantCulture));
        Row(s, "sent", r.Sent.ToString("N0", CultureInfo.InvariantCulture));
        Row(s, "acked", r.Acked.ToString("N0", CultureInfo.InvariantCulture));
        Row(s, "errors", $"{r.Errors.ToString("N0", CultureInfo.InvariantCulture)} ({r.ErrorRate.ToString("P3", CultureInfo.InvariantCulture)})");
        Row(s, r.RateName, r.Rate.ToString("N0", CultureInfo.InvariantCulture));
        foreach (var (k, v) in r.Extra)
        {
            Row(s, k, v);
        }

        s.Append("</table>");

        s.Append("<h2>Throughput over time (").Append(E(r.RateName)).Append(")</h2>");
        AppendThroughputSvg(s, r.Series);

        if (r.Latency is { TotalCount: > 0 } h)
        {
            s.Append("<h2>").Append(E(r.LatencyName)).Append(" percentiles (ms)</h2>");
            var bars = Percentiles.Select(p => (p.Name, Ms(h.GetValueAtPercentile(p.Percentile)))).Append(("max", Ms(h.GetMaxValue()))).ToList();
            AppendBarsSvg(s, bars);
            s.Append("<table><tr>");
            foreach (var (name, _) in bars)
            {
                s.Append("<th>").Append(E(name)).Append("</th>");
            }

            s.Append("</tr><tr>");
            foreach (var (_, value) in bars)
            {
                s.Append("<td>").Append(value.ToString("F3", CultureInfo.InvariantCulture)).Append("</td>");
            }

            s.Append("</tr></table><p class=\"muted\">").Append(h.TotalCount.ToString("N0", CultureInfo.InvariantCulture)).Append(" samples, mean ")
                .Append((h.GetMean() / 1000).ToString("F3", CultureInfo.InvariantCulture)).Append(" ms</p>");
        }

        s.Append("</body></html>\n");
        File.WriteAllText(path, s.ToString());
    }

    private static void AppendThroughputSvg(StringBuilder s, List<SeriesPoint> series)
    {
        const int W = 760, H = 260, L = 70, B = 30, T = 10, R = 10;
        if (series.Count == 0)
        {
            s.Append("<p class=\"muted\">no samples</p>");
            return;
        }

        var rates = new List<(double X, double Y, double Err)>();
        var previous = 0.0;
        foreach (var p in series)
        {
            var dt = Math.Max(1e-6, p.ElapsedSeconds - previous);
            rates.Add((p.ElapsedSeconds, p.Acked / dt, p.Errors / dt));
            previous = p.ElapsedSeconds;
        }

        var maxX = Math.Max(1, rates.Max(x => x.X));
        var maxY = Nice(Math.Max(1, rates.Max(x => Math.Max(x.Y, x.Err))));
        string Px(double x) => (L + (x / maxX * (W - L - R))).ToString("F1", CultureInfo.InvariantCulture);
        string Py(double y) => (T + ((1 - (y / maxY)) * (H - T - B))).ToString("F1", CultureInfo.InvariantCulture);

        s.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-size=\"11\">");
        for (var i = 0; i <= 4; i++)
        {
            var y = maxY * i / 4;
            s.Append(CultureInfo.InvariantCulture, $"<line x1=\"{L}\" x2=\"{W - R}\" y1=\"{Py(y)}\" y2=\"{Py(y)}\" stroke=\"#eee\"/>")
                .Append(CultureInfo.InvariantCulture, $"<text x=\"{L - 5}\" y=\"{Py(y)}\" text-anchor=\"end\" dominant-baseline=\"middle\">{y:N0}</text>");
        }

        s.Append(CultureInfo.InvariantCulture, $"<line x1=\"{L}\" x2=\"{L}\" y1=\"{T}\" y2=\"{H - B}\" stroke=\"#999\"/><line x1=\"{L}\" x2=\"{W - R}\" y1=\"{H - B}\" y2=\"{H - B}\" stroke=\"#999\"/>");
        s.Append(CultureInfo.InvariantCulture, $"<text x=\"{W - R}\" y=\"{H - 5}\" text-anchor=\"end\">{maxX:F0} s</text><text x=\"{L}\" y=\"{H - 5}\">0 s</text>");
        s.Append("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"")
            .AppendJoin(' ', rates.Select(p => $"{Px(p.X)},{Py(p.Y)}")).Append("\"/>");
        if (rates.Any(p => p.Err > 0))
        {
            s.Append("<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" points=\"")
                .AppendJoin(' ', rates.Select(p => $"{Px(p.X)},{Py(p.Err)}")).Append("\"/>");
        }

        s.Append(CultureInfo.InvariantCulture, $"<text x=\"{L + 8}\" y=\"{T + 12}\" fill=\"#1f77b4\">acked/s</text><text x=\"{L + 70}\" y=\"{T + 12}\" fill=\"#d62728\">errors/s</text></svg>");
    }

    private static void AppendBarsSvg(StringBuilder s, List<(string Name, double Value)> bars)
    {
        const int W = 760, RowH = 26, L = 60, R = 90;
        var max = Math.Max(1e-9, bars.Max(b => b.Value));
        s.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{(bars.Count * RowH) + 6}\" font-size=\"12\">");
        for (var i = 0; i < bars.Count; i++)
        {
            var (name, value) = bars[i];
            var width = Math.Max(1, value / max * (W - L - R));
            var y = (i * RowH) + 3;
            s.Append(CultureInfo.InvariantCulture, $"<text x=\"{L - 6}\" y=\"{y + 14}\" text-anchor=\"end\">{E(name)}</text>")
                .Append(CultureInfo.InvariantCulture, $"<rect x=\"{L}\" y=\"{y}\" width=\"{width:F1}\" height=\"{RowH - 8}\" fill=\"#2ca02c\"/>")
                .Append(CultureInfo.InvariantCulture, $"<text x=\"{L + width + 6:F1}\" y=\"{y + 14}\">{value:F3} ms</text>");
        }

        s.Append("</svg>");
    }

    private static void Row(StringBuilder s, string name, string value) =>
        s.Append("<tr><th>").Append(E(name)).Append("</th><td>").Append(E(value)).Append("</td></tr>");

    private static double Nice(double v)
    {
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(v)));
        foreach (var step in new[] { 1.0, 2.0, 2.5, 5.0, 10.0 })
        {
            if (step * magnitude >= v)
            {
                return step * magnitude;
            }
        }

        return 10 * magnitude;
    }

    private static string E(string text) => WebUtility.HtmlEncode(text);

    public static double Ms(long micros) => micros / 1000.0;
}
