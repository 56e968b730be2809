using Perf.Load.Scenarios;

namespace Perf.Load.Tests;

public sealed class EdgeOptionsTests
{
    [Fact]
    public void Defaults_are_one_edge_batches_of_50_on_port_7070()
    {
        var o = new Options([]);
        var s = EdgeScenario.Settings.Read(o);
        o.ThrowIfUnused();
        Assert.Equal((1, 50, 1, 1), (s.Edges, s.Batch, s.Keys, s.Inflight));
        Assert.Equal(7070, s.Common.Port);
        Assert.Equal(TimeSpan.FromSeconds(10), s.Timeout);
        Assert.Equal("http://127.0.0.1:8080", s.Api);
        Assert.Equal(("tenant@example.com", "tenant"), (s.User, s.Password));
        Assert.Null(s.RoutingKey);
        Assert.Null(s.Device);
    }

    [Fact]
    public void Reads_every_option()
    {
        var o = new Options(["--edges", "4", "--batch=10", "--keys", "3", "--inflight", "8", "--port", "38084", "--timeout", "2s",
            "--api", "http://127.0.0.1:38080", "--user", "u", "--password", "p", "--duration", "3s"]);
        var s = EdgeScenario.Settings.Read(o);
        o.ThrowIfUnused();
        Assert.Equal((4, 10, 3, 8), (s.Edges, s.Batch, s.Keys, s.Inflight));
        Assert.Equal(38084, s.Common.Port);
        Assert.Equal(TimeSpan.FromSeconds(2), s.Timeout);
        Assert.Equal(TimeSpan.FromSeconds(3), s.Common.Duration);
        Assert.Equal(("http://127.0.0.1:38080", "u", "p"), (s.Api, s.User, s.Password));
    }

    [Fact]
    public void An_existing_edge_by_routing_key_secret_and_device()
    {
        var device = Guid.NewGuid();
        var s = EdgeScenario.Settings.Read(new Options(["--routing-key", "k", "--secret", "s", "--device", device.ToString()]));
        Assert.Equal(("k", "s", (Guid?)device), (s.RoutingKey, s.Secret, s.Device));
    }

    [Theory]
    [InlineData("--routing-key", "k")]
    [InlineData("--secret", "s")]
    [InlineData("--routing-key", "k", "--secret", "s", "--edges", "2")]
    [InlineData("--device", "00000000-0000-0000-0000-000000000001")]
    [InlineData("--routing-key", "k", "--secret", "s", "--device", "not-a-uuid")]
    [InlineData("--edges", "0")]
    [InlineData("--batch", "0")]
    [InlineData("--inflight", "0")]
    [InlineData("--timeout", "0")]
    [InlineData("--api", "not a url")]
    public void Rejects_bad_combinations_and_values(params string[] args) =>
        Assert.Throws<OptionsException>(() => EdgeScenario.Settings.Read(new Options(args)));

    [Fact]
    public void Unknown_options_are_rejected_after_reading()
    {
        var o = new Options(["--edgez", "2"]);
        _ = EdgeScenario.Settings.Read(o);
        Assert.Throws<OptionsException>(o.ThrowIfUnused);
    }

    [Fact]
    public void Splits_a_uuid_into_big_endian_halves()
    {
        var (msb, lsb) = EdgeScenario.Split(Guid.Parse("01234567-89ab-cdef-0123-456789abcdef"));
        Assert.Equal(0x0123456789abcdefL, msb);
        Assert.Equal(0x0123456789abcdefL, lsb);
        var (m2, l2) = EdgeScenario.Split(Guid.Parse("ffffffff-ffff-ffff-0000-000000000001"));
        Assert.Equal(-1L, m2);
        Assert.Equal(1L, l2);
    }
}
