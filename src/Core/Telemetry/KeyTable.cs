using System.Buffers;
using System.Numerics;
using System.Text;

namespace Perf.Core.Telemetry;

/// <summary>
/// Thread-safe interning of telemetry and attribute key names, keyed by their UTF-8 bytes so a parser
/// can look a key up straight from the read buffer. A key seen before costs one hash and one compare
/// and allocates nothing; reads take no lock.
/// </summary>
/// <remarks>
/// Design: a chained hash table whose nodes are immutable. Readers take a snapshot of the bucket array
/// and walk a chain; writers serialize on a lock, publish a fully built node with a volatile write at
/// the head of its chain, and on growth publish a new bucket array of new nodes. A reader holding an
/// old snapshot sees a consistent (possibly stale) table; a miss falls through to the locked path,
/// which re-checks the current table before adding. The hash is <see cref="HashCode"/>'s randomized
/// per-process seed, so devices cannot choose keys that collide (hash flooding).
/// Entries are never removed: the table grows with the number of distinct key names, like the
/// reference platform's key dictionary.
/// </remarks>
public sealed class KeyTable
{
    // Keys are names, not payloads: a key up to this many bytes is encoded on the stack by Intern(string).
    private const int StackEncodeLimit = 512;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Lock _writeLock = new();
    private Node?[] _buckets;
    private int _count;

    /// <summary>Creates a table sized for about <paramref name="capacity"/> distinct keys before it grows.</summary>
    public KeyTable(int capacity = 256)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacity);
        _buckets = new Node?[(int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(capacity, 16))];
    }

    /// <summary>The number of distinct keys interned so far.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>
    /// Returns the one string instance for the key whose UTF-8 encoding is <paramref name="utf8Key"/>.
    /// Allocates only the first time a key is seen.
    /// </summary>
    /// <exception cref="ArgumentException">The bytes are not valid UTF-8 (only checked for a new key).</exception>
    public string Intern(ReadOnlySpan<byte> utf8Key) => InternEntry(utf8Key).Value;

    /// <summary>
    /// <see cref="Intern(ReadOnlySpan{byte})"/>, returning the key's table entry, which also carries the key's
    /// last parsed string value (<see cref="Entry.LastValue"/>) so a parser can reuse a repeated value.
    /// </summary>
    internal Entry InternEntry(ReadOnlySpan<byte> utf8Key)
    {
        int hash = Hash(utf8Key);
        return Find(utf8Key, hash) ?? Add(utf8Key, hash, knownValue: null);
    }

    /// <summary>Returns the one string instance equal to <paramref name="key"/> (the argument itself when it is new).</summary>
    /// <exception cref="ArgumentException">The string holds an unpaired surrogate (it has no UTF-8 form).</exception>
    public string Intern(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        int maxBytes = StrictUtf8.GetMaxByteCount(key.Length);
        byte[]? rented = null;
        Span<byte> buffer = maxBytes <= StackEncodeLimit
            ? stackalloc byte[StackEncodeLimit]
            : (rented = ArrayPool<byte>.Shared.Rent(maxBytes));
        try
        {
            ReadOnlySpan<byte> utf8 = buffer[..StrictUtf8.GetBytes(key, buffer)];
            int hash = Hash(utf8);
            return (Find(utf8, hash) ?? Add(utf8, hash, key)).Value;
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static int Hash(ReadOnlySpan<byte> utf8)
    {
        var hasher = new HashCode();
        hasher.AddBytes(utf8);
        return hasher.ToHashCode();
    }

    private Entry? Find(ReadOnlySpan<byte> utf8, int hash)
    {
        Node?[] buckets = Volatile.Read(ref _buckets);
        for (Node? node = Volatile.Read(ref buckets[hash & (buckets.Length - 1)]); node is not null; node = node.Next)
        {
            if (node.Hash == hash && utf8.SequenceEqual(node.Entry.Utf8))
            {
                return node.Entry;
            }
        }

        return null;
    }

    private Entry Add(ReadOnlySpan<byte> utf8, int hash, string? knownValue)
    {
        // Decode outside the lock; invalid UTF-8 throws before anything is published.
        string value = knownValue ?? StrictUtf8.GetString(utf8);
        lock (_writeLock)
        {
            // Another writer may have added the key (or grown the table) since our lock-free miss.
            if (Find(utf8, hash) is { } existing)
            {
                return existing;
            }

            Node?[] buckets = _buckets;
            ref Node? head = ref buckets[hash & (buckets.Length - 1)];
            var entry = new Entry(utf8.ToArray(), value);
            Volatile.Write(ref head, new Node(entry, hash, head));
            int count = _count + 1;
            Volatile.Write(ref _count, count);
            if (count > buckets.Length)
            {
                Grow(buckets);
            }

            return entry;
        }
    }

    private void Grow(Node?[] old)
    {
        // Nodes are immutable, so the new table gets new nodes; readers of the old array are unaffected.
        var buckets = new Node?[old.Length * 2];
        foreach (Node? chain in old)
        {
            for (Node? node = chain; node is not null; node = node.Next)
            {
                ref Node? head = ref buckets[node.Hash & (buckets.Length - 1)];
                head = new Node(node.Entry, node.Hash, head);
            }
        }

        Volatile.Write(ref _buckets, buckets);
    }

    /// <summary>
    /// One interned key: its UTF-8 bytes, its string, and the last short string value parsed for it. The
    /// entry outlives table growth (new nodes point at the same entry), so the value slot is not lost.
    /// </summary>
    internal sealed class Entry(byte[] utf8, string value)
    {
        public readonly byte[] Utf8 = utf8;
        public readonly string Value = value;

        /// <summary>
        /// The last string value parsed for this key (at most <see cref="MaxReusedValueLength"/> characters),
        /// or null. Read and replaced as a whole reference (atomic on every platform), so concurrent parsers
        /// at worst miss a reuse; a reader never sees a torn or foreign value.
        /// </summary>
        public string? LastValue;
    }

    /// <summary>String values up to this many characters are remembered per key for reuse (device status, firmware versions).</summary>
    internal const int MaxReusedValueLength = 64;

    private sealed class Node(Entry entry, int hash, Node? next)
    {
        public readonly Entry Entry = entry;
        public readonly int Hash = hash;
        public readonly Node? Next = next;
    }
}
