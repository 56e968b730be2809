using System.Buffers;
using Perf.Fuzz.Harness;

namespace Perf.Fuzz.Tests;

/// <summary>The harness itself finds what it should: a crash, a broken invariant, a hang, and reproduces it.</summary>
public class HarnessTests
{
    /// <summary>Throws on inputs holding 0xAB 0xCD, loops forever on 0xEE 0xEE: stand-ins for real bugs.</summary>
    private sealed class PlantedBugTarget : FuzzTarget
    {
        public override string Name => "planted";
        public override string Description => "test target";

        public override ulong Run(ReadOnlySpan<byte> input)
        {
            if (input.IndexOf([(byte)0xAB, (byte)0xCD]) >= 0)
            {
                throw new IndexOutOfRangeException("planted");
            }

            if (input.IndexOf([(byte)0xEE, (byte)0xEE]) >= 0)
            {
                while (true)
                {
                    Thread.SpinWait(1000);
                }
            }

            return (ulong)input.Length;
        }

        public override IEnumerable<(string Name, byte[] Data)> Seeds() => [("a", [0xAB, 0x00, 0x11]), ("b", [0x01, 0xCD])];

        public override IReadOnlyList<byte[]> Dictionary => [[0xCD]];
    }

    private sealed class SeedOnlyTarget(byte[] seed) : FuzzTarget
    {
        public override string Name => "planted";
        public override string Description => "test target";
        public override ulong Run(ReadOnlySpan<byte> input) => new PlantedBugTarget().Run(input);
        public override IEnumerable<(string Name, byte[] Data)> Seeds() => [("s", seed)];
    }

    private static FuzzPaths TempPaths(out string crashes)
    {
        var root = Path.Combine(Path.GetTempPath(), "perf-fuzz-harness-" + Guid.NewGuid().ToString("N"));
        crashes = Path.Combine(root, "crashes");
        return new FuzzPaths(Path.Combine(root, "corpus"), Path.Combine(root, "regressions"), crashes);
    }

    [Fact]
    public void APlantedCrash_IsFound_SavedAndReplayable()
    {
        var paths = TempPaths(out var crashes);
        var log = new StringWriter();

        var stats = new FuzzRunner(new PlantedBugTarget(), paths, log).Run(TimeSpan.FromSeconds(20), seed: 5);

        Assert.NotNull(stats.Finding);
        Assert.Equal("crash", stats.Finding.Kind);
        Assert.Contains("IndexOutOfRangeException", stats.Finding.Message);
        var saved = Assert.Single(Directory.GetFiles(Path.Combine(crashes, "planted")));
        Assert.Equal(stats.Finding.Input, File.ReadAllBytes(saved));
        Assert.Contains(Convert.ToHexString(stats.Finding.Input), log.ToString());
        Assert.Contains("seed 5", log.ToString());
        Assert.NotNull(FuzzRunner.RunOne(new PlantedBugTarget(), File.ReadAllBytes(saved)));
    }

    [Fact]
    public void TheSameSeed_FindsTheSameInput()
    {
        var first = new FuzzRunner(new PlantedBugTarget(), TempPaths(out _), TextWriter.Null).Run(TimeSpan.FromSeconds(20), seed: 9);
        var second = new FuzzRunner(new PlantedBugTarget(), TempPaths(out _), TextWriter.Null).Run(TimeSpan.FromSeconds(20), seed: 9);

        Assert.Equal(first.Finding!.Iteration, second.Finding!.Iteration);
        Assert.Equal(first.Finding.Input, second.Finding.Input);
    }

    [Fact]
    public void AnInputThatNeverFinishes_IsReportedAsAHang()
    {
        var paths = TempPaths(out var crashes);
        var runner = new FuzzRunner(new SeedOnlyTarget([0x01, 0xEE, 0xEE]), paths, TextWriter.Null)
        {
            HangMilliseconds = 200,
            ConfirmTimeout = TimeSpan.FromSeconds(1),
        };

        var stats = runner.Run(TimeSpan.FromSeconds(30), seed: 1);

        Assert.Equal("hang", stats.Finding?.Kind);
        Assert.Single(Directory.GetFiles(Path.Combine(crashes, "planted"), "hang-*.bin"));
    }

    [Fact]
    public void TheStreamFeeder_HandsOutUnconsumedBytesAgain_WithTheNextChunk()
    {
        byte[] data = [1, 2, 3, 4, 5, 6, 7];
        var seen = new List<string>();

        // Consume two bytes whenever at least three are there.
        long left = StreamFeeder.Feed(data, [2, 3, 6], (buffer, end) =>
        {
            seen.Add($"{Convert.ToHexString(buffer.ToArray())}{(end ? "!" : "")}");
            return buffer.Length >= 3 ? 2 : 0;
        });

        Assert.Equal(["0102", "010203", "03040506", "050607", "07!"], seen);
        Assert.Equal(1, left);
    }
}
