using System.Diagnostics.Metrics;

namespace Perf.Core.Tests;

public class ObservedCounterTests
{
    [Fact]
    public void ReportsRunningTotalsPerTagSet_WhenObserved_OnlyForSlotsThatCounted()
    {
        using var meter = new Meter("Perf.Tests.Observed." + Guid.NewGuid().ToString("N"));
        var counter = new ObservedCounter(meter, "things", [[new("kind", "a")], [new("kind", "b")], [new("kind", "other")]]);
        var seen = new List<(long Value, string Kind)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter == meter)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) => seen.Add((value, (string)tags[0].Value!)));
        listener.Start();

        counter.Add(0, 2);
        counter.Add(0, 3);
        counter.Add(99, 1); // out of range: counted in the last slot
        Assert.Empty(seen); // nothing is pushed per Add

        listener.RecordObservableInstruments();
        Assert.Equal([(5L, "a"), (1L, "other")], seen);

        seen.Clear();
        counter.Add(1, 7);
        listener.RecordObservableInstruments();
        Assert.Equal([(5L, "a"), (7L, "b"), (1L, "other")], seen); // totals, not increments
        Assert.Equal(7, counter.Total(1));
    }
}
