using Perf.Core.Telemetry;

namespace Perf.Core.Tests.Telemetry;

/// <summary>Doubles rendered as Java's Double.toString renders them (the reference's REST values and JSON).</summary>
public class JavaNumbersTests
{
    [Theory]
    [InlineData(42.0, "42.0")]
    [InlineData(55.0, "55.0")]
    [InlineData(21.5, "21.5")]
    [InlineData(-3.25, "-3.25")]
    [InlineData(0.0, "0.0")]
    [InlineData(-0.0, "-0.0")]
    [InlineData(0.001, "0.001")]
    [InlineData(0.0001, "1.0E-4")]
    [InlineData(1e-7, "1.0E-7")]
    [InlineData(1.5e-7, "1.5E-7")]
    [InlineData(9999999.0, "9999999.0")]
    [InlineData(1e7, "1.0E7")]
    [InlineData(12345678.0, "1.2345678E7")]
    [InlineData(1.2345678901234567e19, "1.2345678901234567E19")]
    [InlineData(100.25, "100.25")]
    [InlineData(0.1, "0.1")]
    [InlineData(0.30000000000000004, "0.30000000000000004")]
    [InlineData(1234567.125, "1234567.125")]
    [InlineData(double.MaxValue, "1.7976931348623157E308")]
    [InlineData(double.PositiveInfinity, "Infinity")]
    [InlineData(double.NaN, "NaN")]
    public void Format_WritesWhatJavaWrites(double value, string java)
    {
        Assert.Equal(java, JavaNumbers.Format(value));
        Assert.Equal(java, new KvEntry("k", value).ValueAsString());
    }

    [Fact]
    public void Format_ToASpan_AllocatesNothing()
    {
        Span<byte> buffer = stackalloc byte[JavaNumbers.MaxDoubleLength];
        JavaNumbers.Format(1.5e-7, buffer);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var written = JavaNumbers.Format(12345.678, buffer);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal("12345.678"u8.ToArray(), buffer[..written].ToArray());
    }
}
