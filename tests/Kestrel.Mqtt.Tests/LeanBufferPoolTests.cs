using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Kestrel.Mqtt.Tests;

/// <summary>The lean transport's buffer pool: reuse of the 4 KiB buffers, its bound, and the other sizes.</summary>
public sealed class LeanBufferPoolTests
{
    private const int Size = LeanSocketReader.MinimumBufferSize;

    [Fact]
    public void ReturnedBuffers_AreRentedAgain_InsteadOfAllocated_EvenWhenManyWereOutAtOnce()
    {
        // 300 connections' buffers out at the same moment: more than the shared ArrayPool keeps per size on two
        // cores (32 per core), which is what made the transport allocate at high rates.
        var pool = new LeanBufferPool(512);
        var first = Enumerable.Range(0, 300).Select(_ => pool.Rent(Size)).ToArray();
        Assert.All(first, b => Assert.Equal(Size, b.Length));
        foreach (var buffer in first)
        {
            pool.Return(buffer);
        }
        Assert.Equal(300, pool.Count);

        var again = Enumerable.Range(0, 300).Select(_ => pool.Rent(100)).ToArray();
        Assert.Equal(0, pool.Count);
        Assert.Equal(
            first.Select(System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode).Order(),
            again.Select(System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode).Order());
    }

    [Fact]
    public void Pool_KeepsAtMostItsCapacity()
    {
        var pool = new LeanBufferPool(8);
        var buffers = Enumerable.Range(0, 20).Select(_ => pool.Rent(Size)).ToArray();
        foreach (var buffer in buffers)
        {
            pool.Return(buffer); // beyond 8: handed to the shared ArrayPool, not kept here
        }
        Assert.Equal(8, pool.Count);
    }

    [Fact]
    public void LargerBuffers_ComeFromAndGoToTheSharedPool_NotThisOne()
    {
        var pool = new LeanBufferPool(8);
        var large = pool.Rent(Size * 2 + 1);
        Assert.True(large.Length >= Size * 2 + 1);
        pool.Return(large);
        Assert.Equal(0, pool.Count);

        var small = pool.Rent(1);
        Assert.Equal(Size, small.Length); // a small request still gets the transport's buffer size
        Assert.NotSame(large, small);
    }
}
