using System.Buffers;
using System.IO.Pipelines;
using BenchmarkDotNet.Attributes;

namespace Perf.Bench.Baselines;

/// <summary>
/// The floor under every door: one 64-byte frame written into an in-memory <see cref="Pipe"/> and read
/// back (no sockets). Codec benchmarks that go through a pipe should be compared to this.
/// </summary>
[BenchmarkCategory("Baseline", "Pipelines")]
public class PipeRoundTripBenchmarks
{
    private const int FrameLength = 64;
    private const int FramesPerBatch = 32;

    private Pipe _pipe = null!;
    private readonly byte[] _frame = new byte[FrameLength];

    [GlobalSetup]
    public void Setup()
    {
        // Thresholds off and inline schedulers so the round trip measures the pipe, not the thread pool.
        _pipe = new Pipe(new PipeOptions(
            pauseWriterThreshold: 0,
            resumeWriterThreshold: 0,
            readerScheduler: PipeScheduler.Inline,
            writerScheduler: PipeScheduler.Inline,
            useSynchronizationContext: false));
        _frame.AsSpan().Fill(0x42);
        _frame[0] = 0x32; // a PUBLISH QoS 1 fixed header, for looks
    }

    [Benchmark(Baseline = true)]
    public long WriteFlushRead_OneFrame()
    {
        var writer = _pipe.Writer;
        _frame.CopyTo(writer.GetSpan(FrameLength));
        writer.Advance(FrameLength);
        // With no reader waiting, FlushAsync completes synchronously (no allocation).
        Flush(writer);

        var reader = _pipe.Reader;
        if (!reader.TryRead(out var result))
        {
            throw new InvalidOperationException("The flushed frame is not readable.");
        }

        var length = result.Buffer.Length;
        reader.AdvanceTo(result.Buffer.End);
        return length;
    }

    /// <summary>
    /// The pattern we do not copy (MQTTnet's per-packet <c>new byte[]</c>): the same round trip, but the frame
    /// is copied out into a fresh array. Budgeted at its exact cost (64 + 24 bytes of array header) so the
    /// gate shows it can see a single small allocation.
    /// </summary>
    [Benchmark]
    public byte[] WriteFlushRead_CopyToNewArray()
    {
        var writer = _pipe.Writer;
        _frame.CopyTo(writer.GetSpan(FrameLength));
        writer.Advance(FrameLength);
        Flush(writer);

        var reader = _pipe.Reader;
        if (!reader.TryRead(out var result))
        {
            throw new InvalidOperationException("The flushed frame is not readable.");
        }

        var copy = result.Buffer.ToArray();
        reader.AdvanceTo(result.Buffer.End);
        return copy;
    }

    [Benchmark(OperationsPerInvoke = FramesPerBatch)]
    public long WriteFlushRead_BatchOf32Frames()
    {
        var writer = _pipe.Writer;
        var span = writer.GetSpan(FrameLength * FramesPerBatch);
        for (var i = 0; i < FramesPerBatch; i++)
        {
            _frame.CopyTo(span.Slice(i * FrameLength));
        }

        writer.Advance(FrameLength * FramesPerBatch);
        Flush(writer);

        var reader = _pipe.Reader;
        // Data is already there, so ReadAsync completes synchronously.
        var readTask = reader.ReadAsync();
        if (!readTask.IsCompletedSuccessfully)
        {
            throw new InvalidOperationException("ReadAsync did not complete synchronously.");
        }

        var result = readTask.Result;
        var sequenceReader = new SequenceReader<byte>(result.Buffer);
        long frames = 0;
        while (sequenceReader.Remaining >= FrameLength)
        {
            sequenceReader.Advance(FrameLength);
            frames++;
        }

        reader.AdvanceTo(sequenceReader.Position, result.Buffer.End);
        return frames;
    }

    private static void Flush(PipeWriter writer)
    {
        var flush = writer.FlushAsync();
        if (!flush.IsCompletedSuccessfully)
        {
            throw new InvalidOperationException("FlushAsync did not complete synchronously.");
        }
    }
}
