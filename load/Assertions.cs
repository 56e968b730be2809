using System.Globalization;
using HdrHistogram;

namespace Perf.Load;

/// <summary>
/// <c>--assert 'p99&lt;5ms,rate&gt;50000'</c>: comma-separated clauses <c>metric op value[unit]</c>, each must hold
/// or the run exits 1. Metrics: <c>rate</c> (the scenario's headline rate), <c>p50 p90 p99 p99.9 max mean</c>
/// (latency; units <c>us ms s</c>, default ms), <c>errors</c> (count), <c>error-rate</c> (fraction, or with
/// <c>%</c>), <c>acked</c>, <c>sent</c>. Operators: <c>&lt; &lt;= &gt; &gt;= =</c>.
/// </summary>
public sealed class Assertions
{
    private static readonly string[] Operators = ["<=", ">=", "<", ">", "="];

    private readonly List<Clause> _clauses;

    private Assertions(List<Clause> clauses) => _clauses = clauses;

    public int Count => _clauses.Count;

    /// <summary>Parses an expression; a malformed one is a bad command line (<see cref="OptionsException"/>, exit 2).</summary>
    public static Assertions Parse(string expression)
    {
        var clauses = new List<Clause>();
        foreach (var raw in expression.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var text = raw.Replace(" ", "", StringComparison.Ordinal);
            var op = Operators.Select(o => (Op: o, At: text.IndexOf(o, StringComparison.Ordinal))).Where(x => x.At > 0).OrderBy(x => x.At).ThenByDescending(x => x.Op.Length).FirstOrDefault();
            if (op.Op is null)
            {
                throw new OptionsException($"--assert: '{raw}' has no operator (< <= > >= =).");
            }

            var metric = text[..op.At].ToLowerInvariant();
            var valueText = text[(op.At + op.Op.Length)..];
            double scale = 1;
            if (metric is "p50" or "p90" or "p99" or "p99.9" or "max" or "mean")
            {
                (valueText, scale) = valueText switch
                {
                    _ when valueText.EndsWith("us", StringComparison.Ordinal) => (valueText[..^2], 0.001),
                    _ when valueText.EndsWith("ms", StringComparison.Ordinal) => (valueText[..^2], 1.0),
                    _ when valueText.EndsWith('s') => (valueText[..^1], 1000.0),
                    _ => (valueText, 1.0),
                };
            }
            else if (metric == "error-rate" && valueText.EndsWith('%'))
            {
                (valueText, scale) = (valueText[..^1], 0.01);
            }
            else if (metric is not ("rate" or "errors" or "error-rate" or "acked" or "sent"))
            {
                throw new OptionsException($"--assert: unknown metric '{metric}' (rate, p50, p90, p99, p99.9, max, mean, errors, error-rate, acked, sent).");
            }

            if (!double.TryParse(valueText, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || double.IsNaN(value))
            {
                throw new OptionsException($"--assert: '{raw}': '{valueText}' is not a number.");
            }

            clauses.Add(new Clause(raw, metric, op.Op, value * scale));
        }

        return clauses.Count > 0 ? new Assertions(clauses) : throw new OptionsException("--assert is empty.");
    }

    /// <summary>The clauses <paramref name="result"/> breaks. A latency clause with no latency samples is broken (nothing proves it).</summary>
    public IEnumerable<string> Violations(RunResult result)
    {
        foreach (var c in _clauses)
        {
            double? actual = c.Metric switch
            {
                "rate" => result.Rate,
                "errors" => result.Errors,
                "error-rate" => result.ErrorRate,
                "acked" => result.Acked,
                "sent" => result.Sent,
                _ => Latency(result.Latency, c.Metric),
            };
            if (actual is not { } a)
            {
                yield return $"--assert {c.Text}: no latency samples";
            }
            else if (!Holds(a, c.Op, c.Value))
            {
                yield return string.Create(CultureInfo.InvariantCulture, $"--assert {c.Text}: {c.Metric} is {a:G6}{(IsLatency(c.Metric) ? " ms" : "")}");
            }
        }
    }

    private static bool IsLatency(string metric) => metric is "p50" or "p90" or "p99" or "p99.9" or "max" or "mean";

    private static double? Latency(LongHistogram? h, string metric)
    {
        if (h is not { TotalCount: > 0 })
        {
            return null;
        }

        return metric switch
        {
            "max" => Report.Ms(h.GetMaxValue()),
            "mean" => h.GetMean() / 1000,
            _ => Report.Ms(h.GetValueAtPercentile(double.Parse(metric[1..], CultureInfo.InvariantCulture))),
        };
    }

    private static bool Holds(double actual, string op, double limit) => op switch
    {
        "<" => actual < limit,
        "<=" => actual <= limit,
        ">" => actual > limit,
        ">=" => actual >= limit,
        _ => actual == limit,
    };

    private sealed record Clause(string Text, string Metric, string Op, double Value);
}
