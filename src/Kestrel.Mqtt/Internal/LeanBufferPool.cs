using System.Buffers;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// The lean transport's buffers: <see cref="LeanSocketReader.MinimumBufferSize"/> arrays, kept in a
/// process-wide stack (<see cref="Shared"/>) of up to <see cref="DefaultCapacity"/>, in front of <see cref="ArrayPool{T}.Shared"/>
/// (which serves and takes every other size, and the overflow).
/// </summary>
/// <remarks>
/// Every busy connection holds a receive buffer while it handles what it read, and a send buffer while its
/// acknowledgements are written, and gives them back when it has nothing left (so an idle connection holds
/// none). The shared pool keeps at most 32 arrays of a size per core (64 on two cores) plus one per thread:
/// with 100 connections publishing at 300k msgs/s more than that were out at once, the returns beyond it
/// were dropped and the next rents allocated, about 20 to 30 B per message (issue 12 target 4, profile in
/// docs/PERFORMANCE.md). This stack absorbs that churn; it never holds more than
/// <see cref="DefaultCapacity"/> x 4 KiB (2 MiB), however many connections there were.
/// </remarks>
internal sealed class LeanBufferPool
{
    /// <summary>Most arrays kept: enough for several hundred connections busy at the same moment.</summary>
    internal const int DefaultCapacity = 512;

    /// <summary>The pool of every lean connection's reader and writer.</summary>
    public static LeanBufferPool Shared { get; } = new(DefaultCapacity);

    private readonly Lock _sync = new();
    private readonly byte[]?[] _stack;
    private int _count;

    internal LeanBufferPool(int capacity)
    {
        _stack = new byte[capacity][];
    }

    /// <summary>Arrays kept now (tests).</summary>
    internal int Count
    {
        get
        {
            lock (_sync)
            {
                return _count;
            }
        }
    }

    /// <summary>An array of at least <paramref name="minimumLength"/> bytes (exactly the minimum buffer size when that suffices).</summary>
    public byte[] Rent(int minimumLength)
    {
        if (minimumLength <= LeanSocketReader.MinimumBufferSize)
        {
            lock (_sync)
            {
                if (_count > 0)
                {
                    var array = _stack[--_count]!;
                    _stack[_count] = null;
                    return array;
                }
            }

            minimumLength = LeanSocketReader.MinimumBufferSize;
        }

        return ArrayPool<byte>.Shared.Rent(minimumLength);
    }

    /// <summary>Takes back an array from <see cref="Rent"/>.</summary>
    public void Return(byte[] array)
    {
        if (array.Length == LeanSocketReader.MinimumBufferSize)
        {
            lock (_sync)
            {
                if (_count < _stack.Length)
                {
                    _stack[_count++] = array;
                    return;
                }
            }
        }

        ArrayPool<byte>.Shared.Return(array);
    }
}
