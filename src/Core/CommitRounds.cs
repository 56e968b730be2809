using Perf.Core.Internal;

namespace Perf.Core;

/// <summary>
/// Lets a thread that reads many connections commit their uplinks itself: the MQTT door's epoll thread reads every
/// ready connection, and the records those reads queue wait for its <see cref="RunDeferred"/> at the end of the
/// batch of events instead of waking the log's commit thread. The round then commits, applies and completes them on
/// that thread, so an acknowledgement needs no hand-off between threads (issue 12, row 5).
/// </summary>
/// <remarks>
/// A driving thread must call <see cref="RunDeferred"/> before it blocks, and must never wait synchronously for a
/// record it queued: that record is committed only by its own next <see cref="RunDeferred"/>.
/// </remarks>
public static class CommitRounds
{
    [ThreadStatic]
    private static List<UplinkLog>? t_deferred;

    /// <summary>Makes the calling thread a driving thread for the rest of its life.</summary>
    public static void Drive() => t_deferred ??= new List<UplinkLog>(2);

    /// <summary>Whether the calling thread drives rounds.</summary>
    public static bool IsDriving => t_deferred is not null;

    /// <summary>On a driving thread: notes <paramref name="log"/> for <see cref="RunDeferred"/> and returns true.</summary>
    internal static bool Defer(UplinkLog log)
    {
        var deferred = t_deferred;
        if (deferred is null)
        {
            return false;
        }
        if (!deferred.Contains(log))
        {
            deferred.Add(log);
        }
        return true;
    }

    /// <summary>
    /// Runs a round for every log that the calling thread queued records for since its last call, here (or wakes the
    /// log's commit thread when it is in a round of its own). Records queued by the rounds' own applies (derived
    /// records) get a round too before it returns.
    /// </summary>
    public static void RunDeferred()
    {
        var deferred = t_deferred;
        if (deferred is null)
        {
            return;
        }
        while (deferred.Count > 0)
        {
            var log = deferred[^1];
            deferred.RemoveAt(deferred.Count - 1);
            log.RunRoundHere();
        }
    }
}
