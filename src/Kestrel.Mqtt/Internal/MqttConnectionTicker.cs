namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// One timer for every connection of a handler: connect timeout, keep-alive (§3.1.2.10) and QoS 1
/// downlink re-sends. Issue 12 (memory per idle connection): a <c>PeriodicTimer</c> and a timer loop per
/// connection held about 0.5 KB each (the timer, its queue entry, the loop's state machine, a
/// cancellation registration); here a connection costs two list links.
/// </summary>
/// <remarks>
/// Connections are kept in an intrusive doubly-linked list (O(1) add and remove under one lock). Each
/// tick walks the list under the lock with a read-only check and acts (abort, re-send) outside it, so no
/// connection code runs while the lock is held. The timer runs only while the list is not empty, so an
/// idle handler (and every test host) holds no active timer.
/// </remarks>
internal sealed class MqttConnectionTicker
{
    private readonly Lock _lock = new();
    private readonly Timer _timer;
    private readonly TimeSpan _period;
    private readonly List<MqttConnection> _due = [];
    private MqttConnection? _head;
    private int _count;
    private int _ticking;

    public MqttConnectionTicker(TimeSpan period)
    {
        _period = period;
        _timer = new Timer(static state => ((MqttConnectionTicker)state!).Tick(), this, Timeout.Infinite, Timeout.Infinite);
    }

    public int Count => Volatile.Read(ref _count);

    public void Add(MqttConnection connection)
    {
        lock (_lock)
        {
            connection.TickerNext = _head;
            connection.TickerPrevious = null;
            if (_head is not null)
            {
                _head.TickerPrevious = connection;
            }

            _head = connection;
            connection.TickerLinked = true;
            if (_count++ == 0)
            {
                _timer.Change(_period, _period);
            }
        }
    }

    public void Remove(MqttConnection connection)
    {
        lock (_lock)
        {
            if (!connection.TickerLinked)
            {
                return;
            }

            if (connection.TickerPrevious is { } previous)
            {
                previous.TickerNext = connection.TickerNext;
            }
            else
            {
                _head = connection.TickerNext;
            }

            if (connection.TickerNext is { } next)
            {
                next.TickerPrevious = connection.TickerPrevious;
            }

            connection.TickerNext = null;
            connection.TickerPrevious = null;
            connection.TickerLinked = false;
            if (--_count == 0)
            {
                _timer.Change(Timeout.Infinite, Timeout.Infinite);
            }
        }
    }

    private void Tick()
    {
        // A slow tick (a loaded machine) is not overlapped by the next one.
        if (Interlocked.Exchange(ref _ticking, 1) != 0)
        {
            return;
        }

        try
        {
            long now = Environment.TickCount64;
            lock (_lock)
            {
                for (var c = _head; c is not null; c = c.TickerNext)
                {
                    if (c.IsTimerDue(now))
                    {
                        _due.Add(c);
                    }
                }
            }

            foreach (var c in _due)
            {
                c.OnTimer(now);
            }
        }
        finally
        {
            _due.Clear();
            Volatile.Write(ref _ticking, 0);
        }
    }
}
