using System.Buffers;
using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Kestrel.Mqtt.Tests;

/// <summary>
/// Guards the uplink hot path: after warm-up, parsing PUBLISH (QoS 0 and 1, 64 B and 1 KB, one segment
/// and split across segments) and writing PUBACK, PUBLISH and SUBACK allocate nothing. Runs until the
/// bench suite's allocation gate (bench/MqttCodecBenchmarks.cs) is enforced in CI, and after.
/// </summary>
public class MqttCodecAllocationTests
{
    private const int Iterations = 1000;

    private static byte[] Frame(Action<ArrayBufferWriter<byte>> write)
    {
        var w = new ArrayBufferWriter<byte>();
        write(w);
        return w.WrittenSpan.ToArray();
    }

    public static TheoryData<int, int> PublishCases => new() { { 0, 64 }, { 0, 1024 }, { 1, 64 }, { 1, 1024 } };

    [Theory]
    [MemberData(nameof(PublishCases))]
    public void PublishParse_AndPubAckWrite_AllocateNothing_AfterWarmUp(int qos, int payloadSize)
    {
        var frame = Frame(w => MqttPacketWriter.WritePublish(w, "v1/devices/me/telemetry"u8, new byte[payloadSize], (byte)qos, 42));
        var single = new ReadOnlySequence<byte>(frame);
        var split = Segments.Split(frame, frame.Length / 3);
        var output = new ArrayBufferWriter<byte>(256);

        long Run()
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < Iterations; i++)
            {
                foreach (var seq in (ReadOnlySpan<ReadOnlySequence<byte>>)[single, split])
                {
                    var reader = new SequenceReader<byte>(seq);
                    // Plain checks: xunit's Assert allocates, which would hide the codec's own bytes.
                    if (!MqttPacketReader.TryRead(ref reader, 1 << 17, out var packet) || packet.Payload.Length != payloadSize)
                    {
                        throw new InvalidOperationException("frame did not parse");
                    }

                    output.ResetWrittenCount();
                    MqttPacketWriter.WritePubAck(output, packet.PacketId);
                }
            }

            return GC.GetAllocatedBytesForCurrentThread() - before;
        }

        Run();
        Assert.Equal(0, Run());
    }

    [Fact]
    public void DownlinkWrites_AllocateNothing_AfterWarmUp()
    {
        var output = new ArrayBufferWriter<byte>(4096);
        var payload = new byte[1024];
        byte[] codes = [0x01, 0x80];

        long Run()
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < Iterations; i++)
            {
                output.ResetWrittenCount();
                MqttPacketWriter.WritePublish(output, "v1/devices/me/attributes"u8, payload, 1, 7);
                MqttPacketWriter.WriteSubAck(output, 3, codes);
                MqttPacketWriter.WriteConnAck(output, MqttConnectReturnCode.Accepted);
                output.Write(MqttPacketWriter.PingResp);
            }

            return GC.GetAllocatedBytesForCurrentThread() - before;
        }

        Run();
        Assert.Equal(0, Run());
    }
}
