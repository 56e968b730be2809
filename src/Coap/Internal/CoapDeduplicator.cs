namespace Perf.Coap.Internal;

/// <summary>
/// RFC 7252 §4.5: remembers (endpoint, message id) for EXCHANGE_LIFETIME so a retransmitted request is
/// answered with the same response instead of being processed twice. Memory is bounded: a ring of
/// <c>capacity</c> slots, each with room for a response of up to <see cref="MaxCachedResponse"/> bytes;
/// when the ring wraps the oldest entry is forgotten (a flood of distinct ids cannot grow it).
/// </summary>
internal sealed class CoapDeduplicator
{
    public const int MaxCachedResponse = 192;

    private readonly Lock _lock = new();
    private readonly Slot[] _slots;
    private readonly byte[] _responses;
    private readonly Dictionary<(CoapEndpointKey, ushort), int> _index;
    private readonly long _lifetimeMs;
    private int _next;

    public CoapDeduplicator(int capacity, TimeSpan lifetime)
    {
        _slots = new Slot[capacity];
        _responses = new byte[capacity * MaxCachedResponse];
        _index = new Dictionary<(CoapEndpointKey, ushort), int>(capacity);
        _lifetimeMs = (long)lifetime.TotalMilliseconds;
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _index.Count;
            }
        }
    }

    /// <summary>
    /// Returns -1 and the cached response length (0: still being processed) for a duplicate; otherwise
    /// the slot reserved for the new exchange. A duplicate whose answer was too large to keep is
    /// processed again when <paramref name="safeToRepeat"/> (a GET, RFC 7252 §5.1: safe and idempotent),
    /// else ignored.
    /// </summary>
    public int Check(CoapEndpointKey endpoint, ushort messageId, long nowMs, Span<byte> cached, out int cachedLength, bool safeToRepeat = false)
    {
        cachedLength = 0;
        var key = (endpoint, messageId);
        lock (_lock)
        {
            if (_index.TryGetValue(key, out var existing))
            {
                ref var slot = ref _slots[existing];
                if (slot.ExpiresMs > nowMs && !(safeToRepeat && slot.Uncached))
                {
                    cachedLength = slot.Length;
                    _responses.AsSpan(existing * MaxCachedResponse, slot.Length).CopyTo(cached);
                    return -1;
                }

                _index.Remove(key);
            }

            var index = _next;
            _next = (_next + 1) % _slots.Length;
            ref var victim = ref _slots[index];
            if (victim.InUse)
            {
                _index.Remove((victim.Endpoint, victim.MessageId));
            }

            victim = new Slot { Endpoint = endpoint, MessageId = messageId, ExpiresMs = nowMs + _lifetimeMs, InUse = true };
            _index[key] = index;
            return index;
        }
    }

    /// <summary>Stores the response for <paramref name="slotIndex"/> if the slot still belongs to this exchange.</summary>
    public void Complete(int slotIndex, CoapEndpointKey endpoint, ushort messageId, ReadOnlySpan<byte> response)
    {
        if (slotIndex < 0)
        {
            return;
        }

        lock (_lock)
        {
            ref var slot = ref _slots[slotIndex];
            if (slot.InUse && slot.Endpoint == endpoint && slot.MessageId == messageId)
            {
                if (response.Length > MaxCachedResponse)
                {
                    slot.Uncached = true;
                    slot.Length = 0;
                    return;
                }

                response.CopyTo(_responses.AsSpan(slotIndex * MaxCachedResponse));
                slot.Length = response.Length;
                slot.Uncached = false;
            }
        }
    }

    private struct Slot
    {
        public CoapEndpointKey Endpoint;
        public ushort MessageId;
        public long ExpiresMs;
        public int Length;
        public bool InUse;
        public bool Uncached;
    }
}
