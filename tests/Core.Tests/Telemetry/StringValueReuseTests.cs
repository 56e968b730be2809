using System.Text;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests.Telemetry;

/// <summary>A key's repeated short string value is one instance; different values never share one.</summary>
public class StringValueReuseTests
{
    private readonly KeyTable _keys = new();

    [Fact]
    public void ARepeatedValue_IsTheSameInstance_AndParsingItAgainAllocatesNothing()
    {
        var first = Value("""{"status":"ON"}""");
        var second = Value("""{"status":"ON"}""");
        Assert.Equal("ON", first);
        Assert.Same(first, second);

        var payload = """{"status":"ON","fw":"1.2.3-rc1"}"""u8.ToArray();
        var output = new List<TsKvEntry>(4);
        Parse(payload, output); // warm: both values now remembered
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            output.Clear();
            Parse(payload, output);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal("1.2.3-rc1", output[1].Entry.Text);
    }

    [Fact]
    public void ADifferentValue_IsANewString_AndBecomesTheRememberedOne()
    {
        var on = Value("""{"s":"ON"}""");
        var off = Value("""{"s":"OFF"}""");
        var on2 = Value("""{"s":"ON"}""");
        var on3 = Value("""{"s":"ON"}""");

        Assert.Equal("OFF", off);
        Assert.Equal("ON", on2);
        Assert.NotSame(on, on2); // "OFF" replaced it in between
        Assert.Same(on2, on3);
    }

    [Theory]
    [InlineData("ab", "ac")]       // same length, last byte differs
    [InlineData("ab", "abc")]      // prefix
    [InlineData("abc", "ab")]
    [InlineData("é", "e")]         // non-ASCII vs ASCII
    [InlineData("日本", "日付")]
    [InlineData("", "x")]
    public void ValuesThatDiffer_AreNeverConfused(string a, string b)
    {
        Assert.Equal(a, Value($$"""{"k":"{{a}}"}"""));
        Assert.Equal(b, Value($$"""{"k":"{{b}}"}"""));
        Assert.Equal(a, Value($$"""{"k":"{{a}}"}"""));
    }

    [Fact]
    public void EscapedAndUnescapedForms_OfTheSameText_GiveTheSameInstance()
    {
        var plain = Value("""{"k":"é\"q"}""");
        var escaped = Value("""{"k":"\u00e9\"q"}""");
        var slash = Value("""{"k":"a\/b"}""");

        Assert.Equal("é\"q", plain);
        Assert.Same(plain, escaped);
        Assert.Equal("a/b", slash);
        Assert.Same(slash, Value("""{"k":"a/b"}"""));
    }

    [Fact]
    public void ValuesAreRememberedPerKey_NotAcrossKeys()
    {
        var a = Value("""{"a":"same"}""");
        var b = Value("""{"b":"same"}""");
        Assert.Equal(a, b);
        Assert.NotSame(a, b);
        Assert.Same(a, Value("""{"a":"same"}"""));
    }

    [Fact]
    public void ValuesLongerThanTheLimit_AreNewStringsEachTime_AndStillCorrect()
    {
        var longValue = new string('v', KeyTable.MaxReusedValueLength + 1);
        var first = Value($$"""{"k":"{{longValue}}"}""");
        var second = Value($$"""{"k":"{{longValue}}"}""");
        Assert.Equal(longValue, first);
        Assert.NotSame(first, second);

        var atLimit = new string('w', KeyTable.MaxReusedValueLength);
        Assert.Same(Value($$"""{"k":"{{atLimit}}"}"""), Value($$"""{"k":"{{atLimit}}"}"""));
    }

    [Fact]
    public void AValueSplitAcrossSegments_IsReusedAndCorrect()
    {
        var bytes = Encoding.UTF8.GetBytes("""{"k":"température"}""");
        var output = new List<TsKvEntry>();
        Assert.True(TelemetryJsonParser.TryParseTelemetry(SegmentedSequence.OneBytePerSegment(bytes), 1, _keys, output, out _));
        Assert.True(TelemetryJsonParser.TryParseTelemetry(SegmentedSequence.OneBytePerSegment(bytes), 1, _keys, output, out _));
        Assert.Equal("température", output[0].Entry.Text);
        Assert.Same(output[0].Entry.Text, output[1].Entry.Text);
    }

    [Fact]
    public void InvalidUtf8InAShortValue_IsStillRejected_AndRemembersNothing()
    {
        byte[] bad = [.. """{"k":"a"""u8, 0xFF, .. "\"}"u8];
        var output = new List<TsKvEntry>();
        Assert.False(TelemetryJsonParser.TryParseTelemetry(bad, 1, _keys, output, out var error));
        Assert.Contains("invalid UTF-8 in the value of 'k'", error.Message);

        Assert.False(TelemetryJsonParser.TryParseTelemetry("""{"k":"\ud800"}"""u8, 1, _keys, output, out _));
        Assert.Equal("a", Value("""{"k":"a"}"""));
    }

    [Fact]
    public void ConcurrentParsers_OfAlternatingValues_AlwaysGetTheirOwnValue()
    {
        var payloads = new[] { "ON", "OFF", "STANDBY", "é-mode" }.Select(v => Encoding.UTF8.GetBytes($$"""{"state":"{{v}}"}""")).ToArray();
        var wrong = 0;
        Parallel.For(0, 4, worker =>
        {
            var output = new List<TsKvEntry>(1);
            for (var i = 0; i < 20_000; i++)
            {
                var which = (worker + i) % payloads.Length;
                output.Clear();
                TelemetryJsonParser.TryParseTelemetry(payloads[which], 1, _keys, output, out _);
                var expected = which switch { 0 => "ON", 1 => "OFF", 2 => "STANDBY", _ => "é-mode" };
                if (output[0].Entry.Text != expected)
                {
                    Interlocked.Increment(ref wrong);
                }
            }
        });
        Assert.Equal(0, wrong);
    }

    private void Parse(byte[] payload, List<TsKvEntry> output) =>
        Assert.True(TelemetryJsonParser.TryParseTelemetry(payload, 1, _keys, output, out _));

    private string Value(string json)
    {
        var output = new List<TsKvEntry>();
        Assert.True(TelemetryJsonParser.TryParseTelemetry(Encoding.UTF8.GetBytes(json), 1, _keys, output, out var error), error.Message);
        return Assert.Single(output).Entry.Text!;
    }
}
