using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Perf.Core;

namespace Perf.Coap.Internal;

/// <summary>
/// One request the core has not answered yet, or one confirmable message (separate response,
/// notification) waiting for its ACK. Pooled: the continuation delegate, the address and the token
/// buffer are allocated once per instance, so awaiting the core's commit allocates nothing here.
/// </summary>
internal sealed class CoapExchange
{
    public const int StatePending = 0, StateEmptyAcked = 1, StateDone = 2;

    private readonly CoapRequestHandler _owner;
    private ValueTask<UplinkResult> _uplink;

    public CoapExchange(CoapRequestHandler owner, AddressFamily family)
    {
        _owner = owner;
        Remote = new SocketAddress(family, 32);
        OnUplinkCompleted = CompleteUplink;
    }

    public readonly SocketAddress Remote;
    public readonly byte[] TokenBuffer = new byte[8];
    public readonly Action OnUplinkCompleted;
    public CoapEndpointKey Endpoint;
    public int TokenLength;
    public CoapMessageType RequestType;
    public ushort RequestMessageId;
    public int DedupSlot = -1;
    public long StartedMs;
    public int State;
    public CoapBlock? Block1Echo;
    public CoapBlock? Block2Request;
    public byte SuccessCode;

    // Outbound confirmable message awaiting an ACK (RFC 7252 §4.2).
    public byte[]? Buffer;
    public int Length;
    public ushort OutMessageId;
    public int Attempts;
    public long TimeoutMs;
    public long NextAttemptMs;
    public CoapObserver? Observer;

    // Intrusive list links (pending or outstanding list, never both).
    public CoapExchange? Previous;
    public CoapExchange? Next;
    public bool Listed;

    public ReadOnlySpan<byte> Token => TokenBuffer.AsSpan(0, TokenLength);

    public void Await(ValueTask<UplinkResult> uplink)
    {
        _uplink = uplink;
        _uplink.GetAwaiter().UnsafeOnCompleted(OnUplinkCompleted);
    }

    private void CompleteUplink()
    {
        UplinkResult result;
        try
        {
            result = _uplink.GetAwaiter().GetResult();
        }
        catch (Exception)
        {
            result = new UplinkResult(UplinkStatus.Unavailable);
        }

        _uplink = default;
        _owner.CompleteUplink(this, result);
    }

    public byte[] EnsureBuffer(int size)
    {
        if (Buffer is null || Buffer.Length < size)
        {
            if (Buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(Buffer);
            }

            Buffer = ArrayPool<byte>.Shared.Rent(Math.Max(size, 256));
        }

        return Buffer;
    }

    public void Reset()
    {
        State = StatePending;
        DedupSlot = -1;
        Block1Echo = null;
        Block2Request = null;
        Observer = null;
        Attempts = 0;
        Length = 0;
        Listed = false;
        Previous = Next = null;
        if (Buffer is { Length: > 4096 })
        {
            ArrayPool<byte>.Shared.Return(Buffer);
            Buffer = null;
        }
    }
}

/// <summary>An intrusive doubly linked list of exchanges (O(1) add/remove, no allocation); callers lock.</summary>
internal struct CoapExchangeList
{
    public CoapExchange? Head;
    public int Count;

    public void Add(CoapExchange exchange)
    {
        exchange.Previous = null;
        exchange.Next = Head;
        if (Head is not null)
        {
            Head.Previous = exchange;
        }

        Head = exchange;
        exchange.Listed = true;
        Count++;
    }

    public void Remove(CoapExchange exchange)
    {
        if (!exchange.Listed)
        {
            return;
        }

        if (exchange.Previous is not null)
        {
            exchange.Previous.Next = exchange.Next;
        }
        else
        {
            Head = exchange.Next;
        }

        if (exchange.Next is not null)
        {
            exchange.Next.Previous = exchange.Previous;
        }

        exchange.Previous = exchange.Next = null;
        exchange.Listed = false;
        Count--;
    }
}
