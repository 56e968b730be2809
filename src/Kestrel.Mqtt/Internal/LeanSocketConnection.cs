using System.Collections;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// One accepted socket as a Kestrel <see cref="ConnectionContext"/>, without pipes: the connection is its
/// own duplex pipe and feature collection, the reader receives on demand (an epoll registration while idle,
/// a pooled buffer only while unconsumed data exists) and the writer sends on flush (a pooled buffer only
/// while unsent data exists). An idle connection holds this object, its reader, writer and epoll
/// registration (a GC handle), and its descriptor's handle (<see cref="LeanSocketHandle"/>): no buffer, no loop,
/// no cancellation source, no <see cref="Socket"/> until one is needed.
/// </summary>
/// <remarks>
/// Issue 12 (memory per idle connection): Kestrel's socket transport holds about 2.7 KB per connection
/// (two <see cref="Pipe"/>s, <c>SocketConnection</c>, its receive and send loops and their event args)
/// before any byte arrives; this transport replaces all of it for the doors that opt in.
/// </remarks>
internal sealed class LeanSocketConnection : ConnectionContext, IDuplexPipe, IFeatureCollection,
    IConnectionIdFeature, IConnectionTransportFeature, IConnectionItemsFeature, IConnectionLifetimeFeature,
    IConnectionEndPointFeature, IConnectionSocketFeature, ILeanConnectionEndFeature
{
    private static long s_lastId;

    /// <summary>The local endpoint last read from a socket of a wildcard listener; connections on the same address share it.</summary>
    private static IPEndPoint? s_lastLocal;

    private readonly LeanSocketHandle _handle;
    private readonly LeanSocketHandle.PeerAddress _peer;
    private IPEndPoint? _local;
    private readonly long _id;
    private readonly LeanSocketReader _reader;
    private readonly LeanSocketWriter _writer;
    private readonly nint _epollToken;
    private Overrides? _overrides;
    private Action<object>? _onEnd;
    private object? _onEndState;
    private Socket? _socket;
    private CancellationTokenSource? _closedSource;
    private KeyValuePair<Type, object?>[]? _extraFeatures;
    private int _featureRevision;

    /// <summary>Set once: the reason given to <see cref="Abort(ConnectionAbortedException)"/>, or a close.</summary>
    private volatile Exception? _abortReason;
    private int _closedSignaled;
    private int _disposed;
    private int _socketClosed;

    /// <param name="handle">The accepted descriptor, owned from here on.</param>
    /// <param name="peer">The peer's address, from the accept.</param>
    /// <param name="sharedLocal">The listener's endpoint when it is bound to one address (every connection's local endpoint); null for a wildcard listener.</param>
    public LeanSocketConnection(LeanSocketHandle handle, LeanSocketHandle.PeerAddress peer, IPEndPoint? sharedLocal, int maxUnsentBytes)
    {
        _handle = handle;
        _peer = peer;
        _local = sharedLocal;
        _id = Interlocked.Increment(ref s_lastId);
        _reader = new LeanSocketReader(this);
        _writer = new LeanSocketWriter(this, maxUnsentBytes);
        _epollToken = LeanEpoll.Shared.Register(handle, _reader);
    }

    /// <summary>The descriptor (every receive and send goes through it).</summary>
    internal LeanSocketHandle Handle => _handle;

    /// <summary>
    /// A <see cref="Socket"/> on this connection (<see cref="IConnectionSocketFeature"/>, and the writer's sends the kernel
    /// cannot take at once), made on first use over a duplicate of the descriptor and closed with the connection.
    /// Throws <see cref="ObjectDisposedException"/> once the connection is closed.
    /// </summary>
    public Socket Socket
    {
        get
        {
            if (Volatile.Read(ref _socket) is { } socket)
            {
                return socket;
            }

            lock (_reader)
            {
                if (_socket is null)
                {
                    ObjectDisposedException.ThrowIf(Volatile.Read(ref _socketClosed) != 0, this);
                    _socket = _handle.CreateSocket();
                }

                return _socket;
            }
        }
    }

    /// <summary>Whether a <see cref="Socket"/> was made for this connection (tests: plain sends make none).</summary>
    internal bool HasSocket => Volatile.Read(ref _socket) is not null;

    internal Exception? AbortReason => _abortReason;

    // ConnectionContext

    /// <summary>
    /// Built at each read, not kept (kept only when set): Kestrel reads it at accept and for its connection logs, and
    /// our logs read it when they write, so an idle connection holds no string for it (issue 12: 48 bytes).
    /// </summary>
    public override string ConnectionId
    {
        get => _overrides?.ConnectionId ?? FormatId(_id);
        set => Overridden.ConnectionId = value;
    }

    public override IFeatureCollection Features => this;

    public override IDictionary<object, object?> Items
    {
        get => Overridden.Items ??= new ConnectionItems();
        set => Overridden.Items = value;
    }

    public override IDuplexPipe Transport
    {
        get => _overrides?.Transport ?? this;
        set => Overridden.Transport = value;
    }

    /// <summary>
    /// The listener's endpoint when it is bound to one address. On a wildcard listener, read from the socket once
    /// (<c>getsockname</c>; Kestrel's connection metrics read it at the start and the end of every connection), and shared
    /// with the other connections on the same address rather than kept per connection.
    /// </summary>
    public override EndPoint? LocalEndPoint
    {
        get => _overrides?.LocalEndPoint ?? (_local ??= Shared(_handle.LocalEndPoint()));
        set => Overridden.LocalEndPoint = value;
    }

    /// <summary>The peer's address from the accept, made into an endpoint at each call (kept only when set): an idle connection holds 24 bytes for it.</summary>
    public override EndPoint? RemoteEndPoint
    {
        get => _overrides?.RemoteEndPoint ?? _peer.ToEndPoint();
        set => Overridden.RemoteEndPoint = value;
    }

    /// <summary>Created on first use: fires when the peer closes, the socket fails, or the connection is aborted or disposed.</summary>
    public override CancellationToken ConnectionClosed
    {
        get
        {
            if (_overrides?.ConnectionClosed is { } token)
            {
                return token;
            }

            lock (_reader)
            {
                if (_closedSource is null)
                {
                    _closedSource = new CancellationTokenSource();
                    if (Volatile.Read(ref _closedSignaled) != 0)
                    {
                        _closedSource.Cancel();
                    }
                }

                return _closedSource.Token;
            }
        }
        set => Overridden.ConnectionClosed = value;
    }

    private Overrides Overridden => _overrides ??= new Overrides();

    // IDuplexPipe (the connection's own transport until middleware replaces Transport)

    PipeReader IDuplexPipe.Input => _reader;

    PipeWriter IDuplexPipe.Output => _writer;

    internal LeanSocketReader Reader => _reader;

    internal LeanSocketWriter Writer => _writer;

    /// <summary>Closes the socket at once: pending and later reads fail with <paramref name="abortReason"/>, flushes report completion.</summary>
    public override void Abort(ConnectionAbortedException abortReason)
    {
        if (Interlocked.CompareExchange(ref _abortReason, abortReason, null) is not null)
        {
            return;
        }

        // Shutdown first so the peer sees the close even if a send is in flight; closing the socket fails any
        // pending send, and the reader is woken to fail a waiting read with the abort reason.
        _handle.Shutdown(SocketShutdown.Both);
        CloseSocket();
        if (_reader.OnReadiness(LeanEpoll.EPOLLHUP))
        {
            LeanEpoll.Shared.Dispatch(_reader);
        }
        SignalClosed();
    }

    public override void Abort() => Abort(new ConnectionAbortedException("The connection was aborted by the application."));

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            // Bytes committed before the handler returned are sent before the socket closes (as Kestrel's
            // transport does); a peer that stops reading gets a bounded wait, then the close.
            _writer.Complete();
            await _writer.WaitForSendsAsync(TimeSpan.FromSeconds(5));
            Interlocked.CompareExchange(ref _abortReason, new ConnectionAbortedException("The connection was closed."), null);
            CloseSocket();
            _reader.Complete();
            SignalClosed();
            Action<object>? onEnd;
            lock (_reader)
            {
                onEnd = _onEnd;
                _onEnd = null;
            }

            onEnd?.Invoke(_onEndState!);
            _onEndState = null;
        }

        await base.DisposeAsync();
    }

    public bool TryOnEnd(Action<object> callback, object state)
    {
        lock (_reader)
        {
            if (_onEnd is not null || Volatile.Read(ref _disposed) != 0)
            {
                return false;
            }

            _onEndState = state;
            _onEnd = callback;
            return true;
        }
    }

    /// <summary>Leaves the epoll set, then closes the socket (once: abort and dispose both end here).</summary>
    private void CloseSocket()
    {
        if (Interlocked.Exchange(ref _socketClosed, 1) != 0)
        {
            return;
        }

        LeanEpoll.Shared.Deregister(_handle, _epollToken);
        Socket? socket;
        lock (_reader)
        {
            socket = _socket;
        }

        // The duplicate first (it cancels a send under way on it), then the descriptor, once no call holds it.
        socket?.Dispose();
        _handle.Dispose();
    }

    /// <summary>The peer closed, the socket failed, or the connection ended: fires <see cref="ConnectionClosed"/> (off this thread).</summary>
    internal void SignalClosed()
    {
        if (Interlocked.Exchange(ref _closedSignaled, 1) != 0)
        {
            return;
        }

        CancellationTokenSource? source;
        lock (_reader)
        {
            source = _closedSource;
        }

        if (source is not null)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static s => s.Cancel(), source, preferLocal: false);
        }
    }

    private static IPEndPoint? Shared(IPEndPoint? local)
    {
        if (local is null)
        {
            return null;
        }

        var last = Volatile.Read(ref s_lastLocal);
        if (last is not null && last.Equals(local))
        {
            return last;
        }

        Volatile.Write(ref s_lastLocal, local);
        return local;
    }

    /// <summary>Kestrel's id shape (13 characters, base32 of a counter), built only when asked for.</summary>
    private static string FormatId(long id) => string.Create(13, id, static (span, value) =>
    {
        const string Chars = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
        for (int i = 12; i >= 0; i--)
        {
            span[i] = Chars[(int)(value & 31)];
            value >>= 5;
        }
    });

    // Features: the connection answers for its own feature interfaces; the rest (Kestrel sets four or five
    // per connection, TLS a few more) go to a small array created on the first Set.

    bool IFeatureCollection.IsReadOnly => false;

    int IFeatureCollection.Revision => _featureRevision;

    object? IFeatureCollection.this[Type key]
    {
        get
        {
            if (IsOwnFeature(key))
            {
                return this;
            }

            var extra = _extraFeatures;
            if (extra is not null)
            {
                for (int i = 0; i < extra.Length; i++)
                {
                    if (extra[i].Key == key)
                    {
                        return extra[i].Value;
                    }
                }
            }

            return null;
        }
        set
        {
            _featureRevision++;
            var extra = _extraFeatures;
            int free = -1;
            if (extra is not null)
            {
                for (int i = 0; i < extra.Length; i++)
                {
                    if (extra[i].Key == key)
                    {
                        extra[i] = value is null ? default : new(key, value);
                        return;
                    }

                    if (free < 0 && extra[i].Key is null)
                    {
                        free = i;
                    }
                }
            }

            if (value is null)
            {
                return;
            }

            if (free < 0)
            {
                free = extra?.Length ?? 0;
                Array.Resize(ref _extraFeatures, free + 6);
            }

            _extraFeatures![free] = new(key, value);
        }
    }

    TFeature? IFeatureCollection.Get<TFeature>() where TFeature : default => (TFeature?)((IFeatureCollection)this)[typeof(TFeature)];

    void IFeatureCollection.Set<TFeature>(TFeature? instance) where TFeature : default => ((IFeatureCollection)this)[typeof(TFeature)] = instance;

    IEnumerator<KeyValuePair<Type, object>> IEnumerable<KeyValuePair<Type, object>>.GetEnumerator()
    {
        yield return new(typeof(IConnectionIdFeature), this);
        yield return new(typeof(IConnectionTransportFeature), this);
        yield return new(typeof(IConnectionItemsFeature), this);
        yield return new(typeof(IConnectionLifetimeFeature), this);
        yield return new(typeof(IConnectionEndPointFeature), this);
        yield return new(typeof(IConnectionSocketFeature), this);
        yield return new(typeof(ILeanConnectionEndFeature), this);
        if (_extraFeatures is { } extra)
        {
            foreach (var pair in extra)
            {
                if (pair.Key is not null && pair.Value is not null)
                {
                    yield return new(pair.Key, pair.Value);
                }
            }
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => ((IEnumerable<KeyValuePair<Type, object>>)this).GetEnumerator();

    private static bool IsOwnFeature(Type key) =>
        key == typeof(IConnectionIdFeature) || key == typeof(IConnectionTransportFeature) || key == typeof(IConnectionItemsFeature)
        || key == typeof(IConnectionLifetimeFeature) || key == typeof(IConnectionEndPointFeature) || key == typeof(IConnectionSocketFeature)
        || key == typeof(ILeanConnectionEndFeature);

    /// <summary>
    /// What middleware or a handler set over the connection's own values (TLS replaces the transport; the rest is rare):
    /// one object, made on the first set, instead of six fields on every connection (issue 12: 48 bytes per idle connection).
    /// </summary>
    private sealed class Overrides
    {
        public IDuplexPipe? Transport;
        public string? ConnectionId;
        public IDictionary<object, object?>? Items;
        public EndPoint? LocalEndPoint;
        public EndPoint? RemoteEndPoint;
        public CancellationToken? ConnectionClosed;
    }
}
