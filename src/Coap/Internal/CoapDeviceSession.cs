using System.Net;
using Perf.Core;
using Perf.Core.Telemetry;

namespace Perf.Coap.Internal;

internal enum CoapObserveKind : byte
{
    Attributes,
    Rpc,
}

/// <summary>An RFC 7641 observation: who to notify, with which token, and the next sequence number.</summary>
internal sealed class CoapObserver(CoapDeviceSession session, CoapObserveKind kind, SocketAddress remote, CoapEndpointKey endpoint, byte[] token)
{
    private int _sequence = 1;

    public CoapDeviceSession Session { get; } = session;
    public CoapObserveKind Kind { get; } = kind;
    public SocketAddress Remote { get; } = remote;
    public CoapEndpointKey Endpoint { get; } = endpoint;
    public byte[] Token { get; } = token;

    /// <summary>§3.4: a 24-bit sequence number that increases with every notification.</summary>
    public uint NextSequence() => (uint)Interlocked.Increment(ref _sequence) & 0xFFFFFF;

    /// <summary>
    /// The last representation sent to this observer that did not fit one block (RFC 7959 §3.4): its first block
    /// went in the notification, and the client asks for the rest with a GET carrying Block2 and no Observe,
    /// answered from here so every block comes from the same representation. Null when the last one fit.
    /// </summary>
    public ReadOnlyMemory<byte>? LastLargeRepresentation { get; set; }
}

/// <summary>
/// The CoAP door's session for one device: registered with the session table while at least one
/// client observes <c>attributes</c> or <c>rpc</c>; pushes become confirmable notifications.
/// </summary>
internal sealed class CoapDeviceSession(CoapRequestHandler handler, Guid deviceId, string connectionId) : IDeviceSession
{
    private readonly Lock _lock = new();
    private readonly List<CoapObserver> _observers = [];
    private bool _closed;

    public Guid DeviceId { get; } = deviceId;
    public string Transport => "COAP";
    public string ConnectionId { get; } = connectionId;
    public bool Registered { get; set; }

    public bool WantsAttributeUpdates => Has(CoapObserveKind.Attributes);
    public bool WantsRpc => Has(CoapObserveKind.Rpc);

    public bool IsEmpty
    {
        get
        {
            lock (_lock)
            {
                return _observers.Count == 0;
            }
        }
    }

    private bool Has(CoapObserveKind kind)
    {
        lock (_lock)
        {
            return !_closed && _observers.Exists(o => o.Kind == kind);
        }
    }

    /// <summary>Adds an observer, replacing one of the same kind from the same endpoint (a client re-registering).</summary>
    public CoapObserver Observe(CoapObserveKind kind, SocketAddress remote, CoapEndpointKey endpoint, ReadOnlySpan<byte> token)
    {
        var observer = new CoapObserver(this, kind, SocketAddressCopy.Clone(remote), endpoint, token.ToArray());
        lock (_lock)
        {
            _closed = false;
            _observers.RemoveAll(o => o.Kind == kind && o.Endpoint == endpoint);
            _observers.Add(observer);
        }

        return observer;
    }

    /// <summary>The observer of <paramref name="kind"/> from <paramref name="endpoint"/>, if any.</summary>
    public CoapObserver? Find(CoapObserveKind kind, CoapEndpointKey endpoint)
    {
        lock (_lock)
        {
            foreach (var observer in _observers)
            {
                if (observer.Kind == kind && observer.Endpoint == endpoint)
                {
                    return observer;
                }
            }

            return null;
        }
    }

    /// <summary>Removes the observer of <paramref name="kind"/> from <paramref name="endpoint"/> (Observe=1, §3.6).</summary>
    public bool Cancel(CoapObserveKind kind, CoapEndpointKey endpoint)
    {
        lock (_lock)
        {
            return _observers.RemoveAll(o => o.Kind == kind && o.Endpoint == endpoint) > 0;
        }
    }

    /// <summary>Removes one observer (RST to a notification, or retransmissions exhausted, §3.6 / §4.5).</summary>
    public bool Remove(CoapObserver observer)
    {
        lock (_lock)
        {
            return _observers.Remove(observer);
        }
    }

    private CoapObserver[] Snapshot(CoapObserveKind kind)
    {
        lock (_lock)
        {
            return _closed ? [] : [.. _observers.Where(o => o.Kind == kind)];
        }
    }

    public void PushAttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted)
    {
        var observers = Snapshot(CoapObserveKind.Attributes);
        if (observers.Length == 0)
        {
            return;
        }

        var json = DeviceJson.AttributeUpdate(updated, deleted);
        foreach (var observer in observers)
        {
            handler.Notify(observer, json);
        }
    }

    public bool PushRpcRequest(RpcRequest request)
    {
        var observers = Snapshot(CoapObserveKind.Rpc);
        if (observers.Length == 0)
        {
            return false;
        }

        var json = DeviceJson.RpcRequest(request);
        foreach (var observer in observers)
        {
            handler.Notify(observer, json);
        }

        return true;
    }

    public void Close(string reason)
    {
        lock (_lock)
        {
            _closed = true;
            _observers.Clear();
        }

        handler.SessionClosed(this);
    }
}
