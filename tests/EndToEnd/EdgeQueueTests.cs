using Microsoft.Extensions.Logging.Abstractions;
using Perf.Core;

namespace Perf.EndToEnd;

/// <summary>The core's durable edge queue across a snapshot (checkpoint) and reopen.</summary>
public sealed class EdgeQueueTests
{
    [Fact]
    public void Uuids_TravelAsJavaMostAndLeastSignificantBits()
    {
        // java.util.UUID.fromString("123e4567-e89b-12d3-a456-426614174000"): msb 0x123e4567e89b12d3, lsb 0xa456426614174000.
        var id = Guid.Parse("123e4567-e89b-12d3-a456-426614174000");
        var (msb, lsb) = Perf.Api.Edge.EdgeProto.Split(id);
        Assert.Equal(0x123e4567e89b12d3L, msb);
        Assert.Equal(unchecked((long)0xa456426614174000UL), lsb);
        Assert.Equal(id, Perf.Api.Edge.EdgeProto.Join(msb, lsb));
    }

    [Fact]
    public async Task PendingDownlinks_Assignments_AndSequenceNumbers_SurviveSnapshotAndReopen()
    {
        var dir = Path.Combine(Path.GetTempPath(), "perf-edgeq-" + Guid.NewGuid().ToString("N"));
        var options = new CoreOptions { DataDir = dir, FsyncOnCommit = false };
        try
        {
            Guid edgeId, deviceId;
            long first, third, fourth, fifth;
            await using (var engine = await PerfEngine.OpenAsync(options, NullLoggerFactory.Instance, CancellationToken.None))
            {
                var tenant = (await engine.Registry.CreateTenantAsync("t")).Value!;
                edgeId = (await engine.Registry.CreateEdgeAsync(tenant.Id, "e")).Value!.Id;
                deviceId = (await engine.Registry.CreateDeviceAsync(tenant.Id, "d")).Value!.Id;
                Assert.True(await engine.Edges.SetAssignmentAsync(edgeId, deviceId, assigned: true));
                first = await engine.Edges.EnqueueAsync(edgeId, [1]);
                var second = await engine.Edges.EnqueueAsync(edgeId, [2]);
                third = await engine.Edges.EnqueueAsync(edgeId, [3]);
                fourth = await engine.Edges.EnqueueAsync(edgeId, [4]);
                Assert.True(await engine.Edges.CompleteAsync(edgeId, second));
                await engine.Edges.CompleteAsync(edgeId, fourth + 100, "unknown seq is harmless");
                await engine.Edges.RecordConnectAsync(edgeId, 4400, syncQueued: true);
                await engine.CheckpointAsync();
                fifth = await engine.Edges.EnqueueAsync(edgeId, [5]);
                Assert.True(await engine.Edges.CompleteAsync(edgeId, fifth, "too large"));
                fifth = await engine.Edges.EnqueueAsync(edgeId, [6]);
            }

            await using (var engine = await PerfEngine.OpenAsync(options, NullLoggerFactory.Instance, CancellationToken.None))
            {
                Assert.Equal([deviceId], engine.Edges.AssignedDevices(edgeId));
                Assert.Equal([edgeId], engine.Edges.EdgesOf(deviceId));
                Assert.Equal(4, engine.Edges.PendingCount(edgeId));
                var cursor = 0L;
                var seen = new List<(long, byte)>();
                while (engine.Edges.TryGetNext(edgeId, cursor, out var downlink))
                {
                    seen.Add((downlink.Seq, downlink.Payload[0]));
                    cursor = downlink.Seq;
                }
                Assert.Equal([(first, (byte)1), (third, (byte)3), (fourth, (byte)4), (fifth, (byte)6)], seen);
                var info = engine.Edges.GetConnectionInfo(edgeId);
                Assert.Equal(4400, info.EdgeVersion);
                Assert.True(info.SyncQueued);
                Assert.Contains(engine.Edges.Failures(edgeId), f => f.Error == "too large");
                Assert.Equal(fifth + 1, await engine.Edges.EnqueueAsync(edgeId, [7]));

                // A deleted device leaves the edge; a removed edge forgets its queue.
                await engine.Registry.DeleteDeviceAsync(deviceId);
                Assert.Empty(engine.Edges.AssignedDevices(edgeId));
                await engine.Edges.RemoveEdgeAsync(edgeId);
                Assert.Equal(0, engine.Edges.PendingCount(edgeId));
            }
        }
        finally
        {
            TestDirectories.Delete(dir);
        }
    }
}
