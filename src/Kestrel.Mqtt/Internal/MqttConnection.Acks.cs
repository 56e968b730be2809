using Perf.Core;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// The PUBACK pump: dispatched uplinks wait in arrival order in a ring; whoever finds the oldest one completed
/// (the reader after a batch, or the continuation of the oldest one's commit) acknowledges every completed one
/// from the front, so PUBACKs keep arrival order (§4.6) while the reader goes on reading.
/// </summary>
/// <remarks>
/// One pumper at a time (<see cref="_pumping"/>; a pump requested meanwhile makes it look again). When the
/// oldest uplink is still committing, the pump registers one continuation on it and stops; that uplink is
/// then taken only by its continuation, never by another pump: a pooled uplink returns to its pool when its
/// result is read, so reading it before its continuation ran could lose the continuation. The ring, the
/// continuation and the waiter exist only on connections that publish. Nothing here allocates per message.
/// </remarks>
internal sealed partial class MqttConnection
{
    private PendingUplink[]? _acks;
    private int _ackHead;
    private int _ackCount;
    private bool _pumping;
    private bool _pumpAgain;
    private bool _headArmed;
    private Action? _onHeadCompleted;
    private TaskCompletionSource? _ackWaiter;
    private int _ackWaitAtMost;

    /// <summary>
    /// Dispatched uplinks not yet acknowledged (or dropped). Read without the lock, once per packet: only the
    /// reader adds, so a stale value can only be too high, which at worst makes the reader pump and wait a
    /// moment early.
    /// </summary>
    private int PendingAcks => Volatile.Read(ref _ackCount);

    private void Enqueue(ValueTask<UplinkResult> task, ushort packetId, byte qos, TopicRoute route)
    {
        lock (_writeLock)
        {
            var ring = _acks;
            if (ring is null || _ackCount == ring.Length)
            {
                ring = GrowAcks();
            }

            ring[(_ackHead + _ackCount) % ring.Length] = new PendingUplink(task, packetId, qos, route);
            _ackCount++;
        }
    }

    private PendingUplink[] GrowAcks()
    {
        var old = _acks;
        var ring = new PendingUplink[old is null ? 8 : old.Length * 2];
        for (int i = 0; i < _ackCount; i++)
        {
            ring[i] = old![(_ackHead + i) % old.Length];
        }

        _acks = ring;
        _ackHead = 0;
        return ring;
    }

    /// <summary>Acknowledges the completed uplinks at the front, in order; arms a continuation on the first still committing.</summary>
    private void PumpAcks()
    {
        lock (_writeLock)
        {
            if (_pumping)
            {
                _pumpAgain = true;
                return;
            }

            _pumping = true;
        }

        bool wrote = false;
        bool arm = false;
        ValueTask<UplinkResult> head = default;
        while (true)
        {
            PendingUplink p;
            lock (_writeLock)
            {
                var ring = _acks;
                if (ring is null || _ackCount == 0 || _headArmed || !ring[_ackHead].Task.IsCompleted)
                {
                    if (_pumpAgain)
                    {
                        _pumpAgain = false;
                        continue;
                    }

                    if (_ackCount > 0 && !_headArmed)
                    {
                        _headArmed = true;
                        arm = true;
                        head = ring![_ackHead].Task;
                    }

                    _pumping = false;
                    break;
                }

                p = ring[_ackHead];
                ring[_ackHead] = default;
                _ackHead = (_ackHead + 1) % ring.Length;
                _ackCount--;
                if (_ackWaiter is { } waiter && _ackCount <= _ackWaitAtMost)
                {
                    _ackWaiter = null;
                    waiter.TrySetResult();
                }
            }

            UplinkResult result;
            try
            {
                result = p.Task.Result;
            }
            catch (Exception e)
            {
                // A failed store call: answered like an unavailable store (no PUBACK, the connection closes).
                result = new UplinkResult(UplinkStatus.Unavailable, e.Message);
            }

            Acknowledge(p, result);
            wrote = true;
        }

        if (wrote)
        {
            RequestFlush();
        }

        if (arm)
        {
            head.GetAwaiter().UnsafeOnCompleted(_onHeadCompleted ??= OnHeadCompleted);
        }
    }

    private void OnHeadCompleted()
    {
        lock (_writeLock)
        {
            _headArmed = false;
        }

        PumpAcks();
    }

    /// <summary>Completes when at most <paramref name="atMost"/> uplinks are still unacknowledged.</summary>
    private Task WaitForAcksAsync(int atMost)
    {
        lock (_writeLock)
        {
            if (_ackCount <= atMost)
            {
                return Task.CompletedTask;
            }

            _ackWaitAtMost = atMost;
            _ackWaiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _ackWaiter.Task;
        }
    }
}
