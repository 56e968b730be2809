namespace Perf.Fuzz.Harness;

/// <summary>
/// One fuzz target: runs an input through a codec and checks the target's invariants. A documented parse
/// error (the codec's own exception or error result) is caught inside <see cref="Run"/> and is a normal
/// outcome; any other exception escaping <see cref="Run"/> is a finding, as is a
/// <see cref="FuzzInvariantException"/> (a round trip that does not match, segmentations that disagree).
/// </summary>
/// <remarks>Implementations keep no mutable state: the watchdog re-runs a suspect input on another thread.</remarks>
internal abstract class FuzzTarget
{
    public abstract string Name { get; }

    /// <summary>What the target exercises, for --list and the docs.</summary>
    public abstract string Description { get; }

    /// <summary>
    /// Runs one input. Returns a small behaviour signature (which packet types parsed, which error) that
    /// the runner uses as cheap feedback: an input with a signature not seen before joins the corpus.
    /// </summary>
    public abstract ulong Run(ReadOnlySpan<byte> input);

    /// <summary>Valid inputs built from real packets; written to corpus/&lt;target&gt;/ by --write-corpus.</summary>
    public abstract IEnumerable<(string Name, byte[] Data)> Seeds();

    /// <summary>Tokens the mutator inserts (topic names, option headers, JSON keywords).</summary>
    public virtual IReadOnlyList<byte[]> Dictionary => [];

    /// <summary>Largest input the mutator grows to.</summary>
    public virtual int MaxInputLength => 4096;
}

/// <summary>An invariant of a target does not hold for an input.</summary>
internal sealed class FuzzInvariantException(string message) : Exception(message)
{
    public static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new FuzzInvariantException(message);
        }
    }

    public static void Equal<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual))
        {
            throw new FuzzInvariantException($"{what}: expected {expected}, got {actual}");
        }
    }
}

/// <summary>A signature accumulator: FNV-1a over small values.</summary>
internal struct Signature
{
    private ulong _value;

    public Signature() => _value = 14695981039346656037UL;

    public readonly ulong Value => _value;

    public void Add(ulong value) => _value = (_value ^ value) * 1099511628211UL;

    public void Add(string value)
    {
        foreach (char c in value)
        {
            Add(c);
        }
    }
}

internal static class FuzzTargets
{
    public static readonly FuzzTarget[] All =
    [
        new Perf.Fuzz.Targets.MqttCodecTarget(),
        new Perf.Fuzz.Targets.CoapCodecTarget(),
        new Perf.Fuzz.Targets.TcpFramerTarget(),
        new Perf.Fuzz.Targets.TelemetryJsonTarget(),
        new Perf.Fuzz.Targets.EdgeProtoTarget(),
    ];

    public static FuzzTarget Get(string name) =>
        All.FirstOrDefault(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown target '{name}'; targets: {string.Join(", ", All.Select(t => t.Name))}");
}
