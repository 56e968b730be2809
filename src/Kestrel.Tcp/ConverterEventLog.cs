namespace Perf.Kestrel.Tcp;

/// <summary>The kind of a converter or integration event, as the reference's Events tab names them.</summary>
public enum ConverterEventType : byte
{
    In = 1,
    Out,
    Error,
}

/// <summary>One event: what came in, what went out, or what failed.</summary>
public sealed record ConverterEvent(long Ts, ConverterEventType Type, string Data, string? Metadata = null);

/// <summary>
/// The last N events of a converter or integration plus running counts (troubleshooting reads these
/// over REST). Errors are always recorded; In/Out only in debug mode, since rendering them allocates
/// per message. Thread-safe; a short lock per record, errors are rare and debug mode is not a hot path.
/// </summary>
public sealed class ConverterEventLog
{
    private readonly ConverterEvent?[] _ring;
    private readonly Lock _lock = new();
    private int _next;
    private long _messages;
    private long _errors;

    public ConverterEventLog(int capacity = 32)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _ring = new ConverterEvent?[capacity];
    }

    /// <summary>Messages processed successfully.</summary>
    public long MessageCount => Interlocked.Read(ref _messages);

    public long ErrorCount => Interlocked.Read(ref _errors);

    /// <summary>The most recent error, or null.</summary>
    public ConverterEvent? LastError { get; private set; }

    public void CountMessage() => Interlocked.Increment(ref _messages);

    public void Record(ConverterEventType type, string data, string? metadata = null)
    {
        var entry = new ConverterEvent(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), type, data, metadata);
        lock (_lock)
        {
            _ring[_next] = entry;
            _next = (_next + 1) % _ring.Length;
            if (type == ConverterEventType.Error)
            {
                _errors++;
                LastError = entry;
                Internal.TcpMetrics.ConverterError();
            }
        }
    }

    /// <summary>The retained events, newest first.</summary>
    public IReadOnlyList<ConverterEvent> Snapshot()
    {
        lock (_lock)
        {
            var list = new List<ConverterEvent>(_ring.Length);
            for (int i = 1; i <= _ring.Length; i++)
            {
                var entry = _ring[(_next - i + _ring.Length) % _ring.Length];
                if (entry is not null)
                {
                    list.Add(entry);
                }
            }

            return list;
        }
    }
}
