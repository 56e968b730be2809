using Perf.Coap.Internal;

namespace Perf.Coap.Tests;

public sealed class CoapDeduplicatorTests
{
    private static readonly CoapEndpointKey Alice = new(1, 2, 3, 4), Bob = new(5, 6, 7, 8);

    [Fact]
    public void Duplicate_GetsTheCachedResponse_AndANewIdIsNew()
    {
        var dedup = new CoapDeduplicator(8, TimeSpan.FromSeconds(247));
        var cached = new byte[CoapDeduplicator.MaxCachedResponse];
        var slot = dedup.Check(Alice, 10, 0, cached, out _);
        Assert.True(slot >= 0);
        Assert.Equal(-1, dedup.Check(Alice, 10, 1, cached, out var inProgress));
        Assert.Equal(0, inProgress); // still being processed: no answer yet

        dedup.Complete(slot, Alice, 10, [0x60, 0x41, 0, 10]);
        Assert.Equal(-1, dedup.Check(Alice, 10, 2, cached, out var length));
        Assert.Equal(new byte[] { 0x60, 0x41, 0, 10 }, cached.AsSpan(0, length).ToArray());

        Assert.True(dedup.Check(Alice, 11, 2, cached, out _) >= 0);
        Assert.True(dedup.Check(Bob, 10, 2, cached, out _) >= 0); // ids are per endpoint
    }

    [Fact]
    public void Entries_ExpireAfterTheExchangeLifetime()
    {
        var dedup = new CoapDeduplicator(8, TimeSpan.FromMilliseconds(100));
        var cached = new byte[CoapDeduplicator.MaxCachedResponse];
        Assert.True(dedup.Check(Alice, 1, 0, cached, out _) >= 0);
        Assert.Equal(-1, dedup.Check(Alice, 1, 99, cached, out _));
        Assert.True(dedup.Check(Alice, 1, 100, cached, out _) >= 0);
    }

    [Fact]
    public void Memory_IsBounded_TheOldestEntryIsForgottenWhenTheRingWraps()
    {
        var dedup = new CoapDeduplicator(4, TimeSpan.FromSeconds(247));
        var cached = new byte[CoapDeduplicator.MaxCachedResponse];
        for (ushort id = 0; id < 1000; id++)
        {
            dedup.Check(Alice, id, 0, cached, out _);
        }

        Assert.Equal(4, dedup.Count);
        Assert.Equal(-1, dedup.Check(Alice, 999, 0, cached, out _));
        Assert.True(dedup.Check(Alice, 0, 0, cached, out _) >= 0);
    }

    [Fact]
    public void A_StaleSlot_DoesNotTakeTheResponseOfTheExchangeThatReplacedIt()
    {
        var dedup = new CoapDeduplicator(1, TimeSpan.FromSeconds(247));
        var cached = new byte[CoapDeduplicator.MaxCachedResponse];
        var first = dedup.Check(Alice, 1, 0, cached, out _);
        var second = dedup.Check(Alice, 2, 0, cached, out _);
        Assert.Equal(first, second);
        dedup.Complete(first, Alice, 1, [1, 2, 3, 4]);
        Assert.Equal(-1, dedup.Check(Alice, 2, 0, cached, out var length));
        Assert.Equal(0, length);
    }

    [Fact]
    public void ADuplicateGet_WhoseAnswerWasTooLargeToKeep_IsProcessedAgain_ButAPostIsNot()
    {
        var dedup = new CoapDeduplicator(8, TimeSpan.FromSeconds(247));
        var cached = new byte[CoapDeduplicator.MaxCachedResponse];
        var get = dedup.Check(Alice, 1, 0, cached, out _, safeToRepeat: true);
        dedup.Complete(get, Alice, 1, new byte[CoapDeduplicator.MaxCachedResponse + 1]);
        Assert.True(dedup.Check(Alice, 1, 1, cached, out _, safeToRepeat: true) >= 0);

        var post = dedup.Check(Alice, 2, 0, cached, out _);
        dedup.Complete(post, Alice, 2, new byte[CoapDeduplicator.MaxCachedResponse + 1]);
        Assert.Equal(-1, dedup.Check(Alice, 2, 1, cached, out var length));
        Assert.Equal(0, length);
    }
}
