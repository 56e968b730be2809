extern alias loadtool;

using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Grpc.Core;
using MQTTnet;
using MQTTnet.Protocol;
using Perf.Api.Edge.Protos;
using Perf.Api.Edge.Protos.Transport;
using Xunit.Abstractions;

namespace Perf.EndToEnd;

/// <summary>
/// The durability contract under load: the host runs as a child process, is SIGKILLed while clients are
/// in full flight, restarted on the same DATA_DIR, and everything it acknowledged is compared with what
/// it holds afterwards. One class, so these heavy tests run one after another.
/// </summary>
public sealed partial class CrashUnderLoadTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(60);

    /// <summary>
    /// load/'s <c>crash</c> scenario, in-process: 20 MQTT QoS 1 publishers (window 32 each) against the
    /// host, SIGKILL after 3 s, restart; every PUBACKed message id is in the stored history, none twice.
    /// </summary>
    [Fact]
    public async Task Mqtt_Qos1_Publishers_SigkillMidRun_NoAcknowledgedMessageLost_NoneDuplicated()
    {
        var dataDir = NewDataDir("mqtt");
        var json = Path.Combine(Path.GetTempPath(), $"crash-{Guid.NewGuid():N}.json");
        var inv = CultureInfo.InvariantCulture;
        var settings = HostFixture.FreePortSettings(dataDir);
        settings["COAP_ENABLED"] = "false";
        settings["TCP_INTEGRATION_ENABLED"] = "false";
        settings["EDGES_ENABLED"] = "false";
        try
        {
            using var first = HostProcess.Start(settings);
            var ports = await first.WaitForDoorsAsync(2, Start);

            // The scenario kills the host and waits for its REST API: restart it on the same HTTP port as soon as it died.
            var restart = Task.Run(async () =>
            {
                await first.WaitForExitAsync(TimeSpan.FromMinutes(3));
                return await RestartAsync(settings, ports["http"], 2);
            });
            var exit = await loadtool::Perf.Load.LoadCli.RunAsync(
                [
                    "crash", "--port", ports["mqtt"].ToString(inv), "--api", $"http://127.0.0.1:{ports["http"]}",
                    "--server-pid", first.Pid.ToString(inv), "--connections", "20", "--window", "32",
                    "--kill-after", "3s", "--restart-timeout", "120s", "--json", json,
                ],
                CancellationToken.None);
            using var restarted = await restart;

            using var report = JsonDocument.Parse(await File.ReadAllTextAsync(json));
            var extra = report.RootElement.GetProperty("extra");
            long Figure(string name) => long.Parse(extra.GetProperty(name).GetString()!, inv);
            var (sent, acked, stored, lost, dup) = (Figure("sent"), Figure("acked"), Figure("stored"), Figure("lost"), Figure("dup"));
            output.WriteLine($"sent {sent}, acked {acked}, stored {stored}, lost {lost}, dup {dup}, stored unacked {Figure("stored unacked (in flight at the kill)")}, phantom {Figure("phantom (stored, never sent)")}");
            Assert.Equal(0, exit);
            Assert.True(acked >= 1000, $"only {acked} messages acknowledged before the kill: not a load");
            Assert.True(sent > acked, "nothing was in flight at the kill");
            Assert.Equal(0, lost);
            Assert.Equal(0, dup);
            Assert.Equal(0, Figure("phantom (stored, never sent)"));
            Assert.InRange(stored, acked, sent);

            restarted.Terminate();
            Assert.Equal(0, await restarted.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            File.Delete(json);
            TestDirectories.Delete(dataDir);
        }
    }

    /// <summary>
    /// Persistent RPCs under load: eight REST callers create two-way persistent RPCs for eight devices
    /// (four connected and answering the even-numbered ones, two connected and never answering, two
    /// offline) while a poller records the state REST reports for each. SIGKILL; restart. Every RPC REST
    /// ever reported exists, in that state or a later one; every SUCCESSFUL one keeps its response; then
    /// the devices reconnect and every RPC that was still QUEUED or SENT is delivered and answered.
    /// </summary>
    [Fact]
    public async Task PersistentRpcs_SigkillWhileInFlight_NoneLost_NoneMovedBackwards_ResponsesIntact()
    {
        var dataDir = NewDataDir("rpc");
        var settings = HostFixture.FreePortSettings(dataDir);
        settings["COAP_ENABLED"] = "false";
        settings["TCP_INTEGRATION_ENABLED"] = "false";
        settings["EDGES_ENABLED"] = "false";
        var observed = new ConcurrentDictionary<Guid, RpcSeen>();
        var expiration = DateTimeOffset.UtcNow.AddMinutes(30).ToUnixTimeMilliseconds();
        try
        {
            using var first = HostProcess.Start(settings);
            var ports = await first.WaitForDoorsAsync(2, Start);
            var api = new Uri($"http://127.0.0.1:{ports["http"]}");
            Guid[] devices;
            string[] tokens;
            using (var rest = await TenantRest.LoginAsync(api))
            {
                var created = new List<(Guid Id, string Token, string Name)>();
                for (var i = 0; i < 8; i++)
                {
                    created.Add(await rest.CreateDeviceAsync("rpc-crash-" + i));
                }

                devices = [.. created.Select(c => c.Id)];
                tokens = [.. created.Select(c => c.Token)];
                var live = new List<RpcAnsweringDevice>();
                for (var i = 0; i < 6; i++)
                {
                    live.Add(await RpcAnsweringDevice.ConnectAsync(ports["mqtt"], tokens[i], answer: i < 4 ? n => n % 2 == 0 : _ => false));
                }

                using var stop = new CancellationTokenSource();
                var creators = Enumerable.Range(0, 8).Select(c => Task.Run(async () =>
                {
                    var n = 0;
                    while (!stop.IsCancellationRequested)
                    {
                        var device = devices[c];
                        n++;
                        try
                        {
                            var response = await rest.Http.PostAsJsonAsync($"/api/rpc/twoway/{device}",
                                new { method = "crash", @params = new { n }, persistent = true, expirationTime = expiration });
                            if (response.IsSuccessStatusCode)
                            {
                                var id = Guid.Parse((await response.Content.ReadFromJsonAsync<JsonObject>())!["rpcId"]!.GetValue<string>());
                                observed.TryAdd(id, new RpcSeen(device, n));
                            }
                        }
                        catch (Exception e) when (e is HttpRequestException or IOException)
                        {
                            // The server died: before the response (HttpRequestException) or in its body (HttpIOException).
                            return;
                        }
                    }
                })).ToArray();
                var poller = Task.Run(async () =>
                {
                    while (!stop.IsCancellationRequested)
                    {
                        foreach (var device in devices)
                        {
                            try
                            {
                                foreach (var rpc in await ListRpcsAsync(rest.Http, device))
                                {
                                    if (observed.TryGetValue(rpc.Id, out var seen))
                                    {
                                        seen.Observe(rpc.Status, rpc.Response);
                                    }
                                }
                            }
                            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
                            {
                                // The server died; a list cut off in its body ends in an HttpIOException.
                                return;
                            }
                        }
                    }
                });

                // Kill once some RPCs have been answered, with the creators and the devices still busy.
                var deadline = DateTime.UtcNow.AddSeconds(60);
                while (observed.Values.Count(s => s.Status == "SUCCESSFUL") < 50 && DateTime.UtcNow < deadline)
                {
                    await Task.Delay(100);
                }

                first.KillHard();
                await stop.CancelAsync();
                await Task.WhenAll([.. creators, poller]);
                foreach (var device in live)
                {
                    await device.DisposeAsync();
                }
            }

            var before = observed.Values.GroupBy(s => s.Status).ToDictionary(g => g.Key, g => g.Count());
            output.WriteLine($"before the kill: {observed.Count} RPCs created; last state REST reported: {string.Join(", ", before.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value}"))}");
            Assert.True(before.GetValueOrDefault("SUCCESSFUL") >= 50, "too few answered RPCs before the kill");

            using var restarted = await RestartAsync(settings, ports["http"], 2);
            using var rest2 = await TenantRest.LoginAsync(api);
            var after = new Dictionary<Guid, (string Status, string? Response)>();
            foreach (var device in devices)
            {
                foreach (var rpc in await ListRpcsAsync(rest2.Http, device))
                {
                    after[rpc.Id] = (rpc.Status, rpc.Response);
                }
            }

            var lost = observed.Keys.Where(id => !after.ContainsKey(id)).ToList();
            var backwards = observed.Where(p => after.TryGetValue(p.Key, out var now) && RpcSeen.Rank(now.Status) < RpcSeen.Rank(p.Value.Status))
                .Select(p => $"{p.Key}: {p.Value.Status} -> {after[p.Key].Status}").ToList();
            var terminalChanged = observed.Where(p => RpcSeen.Rank(p.Value.Status) >= 3 && after.TryGetValue(p.Key, out var now) && now.Status != p.Value.Status).ToList();
            var badResponses = observed.Where(p => after.TryGetValue(p.Key, out var now) && now.Status == "SUCCESSFUL"
                && (now.Response is null || JsonNode.Parse(now.Response)!["n"]!.GetValue<int>() != p.Value.N || (p.Value.Response is { } r && r != now.Response))).ToList();
            var afterCounts = observed.Keys.Where(after.ContainsKey).GroupBy(id => after[id].Status).ToDictionary(g => g.Key, g => g.Count());
            output.WriteLine($"after the restart: {string.Join(", ", afterCounts.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value}"))}; lost {lost.Count}, moved backwards {backwards.Count}, terminal changed {terminalChanged.Count}, bad responses {badResponses.Count}");
            Assert.Empty(lost);
            Assert.True(backwards.Count == 0, "moved backwards: " + string.Join("; ", backwards.Take(10)));
            Assert.Empty(terminalChanged);
            Assert.Empty(badResponses);

            // The queue is live after the crash: the devices come back answering everything, and every RPC that was
            // QUEUED or SENT at the kill is delivered again and completes (DELIVERED ones wait for their reply, as designed).
            var pending = observed.Keys.Where(id => after[id].Status is "QUEUED" or "SENT").ToHashSet();
            var back = new List<RpcAnsweringDevice>();
            for (var i = 0; i < 6; i++)
            {
                back.Add(await RpcAnsweringDevice.ConnectAsync(restarted.Ports["mqtt"], tokens[i], answer: _ => true));
            }

            try
            {
                var completeBy = DateTime.UtcNow.AddSeconds(90);
                var liveDevices = devices.Take(6).ToHashSet();
                var open = pending.Where(id => liveDevices.Contains(observed[id].Device)).ToHashSet();
                while (open.Count > 0)
                {
                    Assert.True(DateTime.UtcNow < completeBy, $"{open.Count} re-queued RPCs not answered after the restart");
                    foreach (var device in liveDevices)
                    {
                        foreach (var rpc in await ListRpcsAsync(rest2.Http, device))
                        {
                            if (rpc.Status == "SUCCESSFUL")
                            {
                                open.Remove(rpc.Id);
                            }
                        }
                    }

                    await Task.Delay(200);
                }

                output.WriteLine($"{pending.Count} RPCs QUEUED/SENT at the kill; all {pending.Count(id => liveDevices.Contains(observed[id].Device))} for reconnected devices answered after the restart");
            }
            finally
            {
                foreach (var device in back)
                {
                    await device.DisposeAsync();
                }
            }

            restarted.Terminate();
            Assert.Equal(0, await restarted.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            TestDirectories.Delete(dataDir);
        }
    }

    /// <summary>
    /// Edge queues under load: an edge receives downlinks while REST callers change shared attributes of
    /// its four devices (value v = 1, 2, 3, ... per device) and assign new devices to it, and the edge
    /// uplinks telemetry. SIGKILL; restart; the edge reconnects. Every change acknowledged to a REST caller
    /// before the kill reaches the edge (before the kill or after the reconnect), each edge session sees a
    /// device's values in order, and every uplink acknowledged before the kill is stored.
    /// </summary>
    [Fact]
    public async Task EdgeQueue_SigkillUnderLoad_EveryAcknowledgedChangeReachesTheEdgeInOrder_AckedUplinksStored()
    {
        var dataDir = NewDataDir("edge");
        var settings = HostFixture.FreePortSettings(dataDir);
        settings["MQTT_ENABLED"] = "false";
        settings["COAP_ENABLED"] = "false";
        settings["TCP_INTEGRATION_ENABLED"] = "false";
        var acknowledged = new ConcurrentDictionary<Guid, ConcurrentBag<long>>(); // device -> values REST acknowledged
        var assigned = new ConcurrentBag<Guid>();                                   // devices whose assignment REST acknowledged
        var uplinked = new ConcurrentBag<long>();                                   // ts of uplinks the server acknowledged
        var received = new[] { new EdgeLog(), new EdgeLog() };                      // per edge session
        const long UplinkBase = 1_600_000_000_000;
        try
        {
            using var first = HostProcess.Start(settings);
            var ports = await first.WaitForDoorsAsync(2, Start);
            var api = new Uri($"http://127.0.0.1:{ports["http"]}");
            using var rest = await TenantRest.LoginAsync(api);
            var routingKey = "rk-" + Guid.NewGuid().ToString("N");
            var edgeJson = await (await rest.Http.PostAsJsonAsync("/api/edge", new { name = "crash-edge", type = "default", routingKey, secret = "s3cret" })).Content.ReadFromJsonAsync<JsonObject>();
            var edgeId = Guid.Parse(edgeJson!["id"]!["id"]!.GetValue<string>());
            var devices = new Guid[4];
            for (var i = 0; i < devices.Length; i++)
            {
                devices[i] = (await rest.CreateDeviceAsync("edge-crash-" + i)).Id;
                (await rest.Http.PostAsync($"/api/edge/{edgeId}/device/{devices[i]}", null)).EnsureSuccessStatusCode();
                acknowledged[devices[i]] = [];
            }

            var edge = new EdgeTestClient(ports["edges"]);
            Assert.Equal(ConnectResponseCode.Accepted, (await edge.ConnectAsync(routingKey, "s3cret")).ResponseCode);
            await edge.UntilSyncCompletedAsync(TimeSpan.FromSeconds(30));
            var collector = Task.Run(() => received[0].CollectAsync(edge));

            using var stop = new CancellationTokenSource();
            var writers = devices.Select(device => Task.Run(async () =>
            {
                for (long v = 1; !stop.IsCancellationRequested; v++)
                {
                    try
                    {
                        using var body = new StringContent($$"""{"v":{{v}}}""", System.Text.Encoding.UTF8, "application/json");
                        if ((await rest.Http.PostAsync($"/api/plugins/telemetry/DEVICE/{device}/SHARED_SCOPE", body)).IsSuccessStatusCode)
                        {
                            acknowledged[device].Add(v);
                        }
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                    {
                        return;
                    }
                }
            })).ToList();
            writers.Add(Task.Run(async () =>
            {
                for (var i = 0; !stop.IsCancellationRequested; i++)
                {
                    try
                    {
                        var created = await rest.Http.PostAsJsonAsync("/api/device", new { name = $"edge-crash-new-{i}-{Guid.NewGuid():N}", type = "default" });
                        var id = Guid.Parse((await created.Content.ReadFromJsonAsync<JsonObject>())!["id"]!["id"]!.GetValue<string>());
                        if ((await rest.Http.PostAsync($"/api/edge/{edgeId}/device/{id}", null)).IsSuccessStatusCode)
                        {
                            assigned.Add(id);
                        }
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException or IOException)
                    {
                        return;
                    }
                }
            }));
            writers.Add(Task.Run(async () =>
            {
                var (msb, lsb) = EdgeTestClient.Split(devices[0]);
                for (long k = 0; !stop.IsCancellationRequested; k += 10)
                {
                    var uplink = new UplinkMsg();
                    var telemetry = new PostTelemetryMsg();
                    for (var j = 0; j < 10; j++)
                    {
                        var list = new TsKvListProto { Ts = UplinkBase + k + j };
                        list.Kv.Add(new KeyValueProto { Key = "up", Type = KeyValueType.LongV, LongV = k + j });
                        telemetry.TsKvList.Add(list);
                    }

                    uplink.EntityData.Add(new EntityDataProto { EntityIdMSB = msb, EntityIdLSB = lsb, EntityType = "DEVICE", PostTelemetryMsg = telemetry });
                    try
                    {
                        if ((await edge.UplinkAsync(uplink)).Success)
                        {
                            for (var j = 0; j < 10; j++)
                            {
                                uplinked.Add(UplinkBase + k + j);
                            }
                        }
                    }
                    catch (Exception e) when (e is RpcException or TimeoutException or InvalidOperationException or ObjectDisposedException)
                    {
                        return;
                    }
                }
            }));

            // Kill once the edge has taken a fair share of changes, with every writer still going.
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while ((received[0].Count < 200 || uplinked.Count < 200) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }

            first.KillHard();
            await stop.CancelAsync();
            await Task.WhenAll(writers);
            await edge.DisposeAsync();
            await collector;

            var acked = acknowledged.Sum(p => p.Value.Count);
            output.WriteLine($"before the kill: {acked} attribute changes and {assigned.Count} assignments acknowledged to REST, {uplinked.Count} uplinked points acknowledged to the edge; the edge received {received[0].Count} downlinks");
            Assert.True(acked >= 100 && uplinked.Count >= 100, "too little load before the kill");

            using var restarted = await RestartAsync(settings, ports["http"], 2);
            await using var edge2 = new EdgeTestClient(restarted.Ports["edges"]);
            Assert.Equal(ConnectResponseCode.Accepted, (await edge2.ConnectAsync(routingKey, "s3cret")).ResponseCode);
            var collector2 = Task.Run(() => received[1].CollectAsync(edge2));

            // Wait (polling what the edge has, with a deadline) until every acknowledged change has reached it.
            List<string> Missing()
            {
                var missing = new List<string>();
                foreach (var (device, values) in acknowledged)
                {
                    foreach (var v in values)
                    {
                        if (!received[0].HasValue(device, v) && !received[1].HasValue(device, v))
                        {
                            missing.Add($"{device} v={v}");
                        }
                    }
                }

                missing.AddRange(assigned.Where(d => !received[0].HasDevice(d) && !received[1].HasDevice(d)).Select(d => $"assignment of {d}"));
                return missing;
            }

            var reconnectDeadline = DateTime.UtcNow.AddSeconds(60);
            while (Missing().Count > 0 && DateTime.UtcNow < reconnectDeadline)
            {
                await Task.Delay(100);
            }

            var stillMissing = Missing();
            output.WriteLine($"after the reconnect: the edge received {received[1].Count} downlinks; {stillMissing.Count} acknowledged changes missing");
            Assert.True(stillMissing.Count == 0, "acknowledged changes that never reached the edge: " + string.Join("; ", stillMissing.Take(10)));
            foreach (var log in received)
            {
                foreach (var device in devices)
                {
                    var order = log.Values(device);
                    Assert.True(order.Zip(order.Skip(1)).All(p => p.First <= p.Second), $"values of {device} out of order in one edge session: {string.Join(',', order)}");
                }
            }

            using var rest2 = await TenantRest.LoginAsync(api);
            var history = await rest2.Http.GetFromJsonAsync<JsonObject>(
                $"/api/plugins/telemetry/DEVICE/{devices[0]}/values/timeseries?keys=up&startTs={UplinkBase}&endTs={UplinkBase + 10_000_000}&limit=1000000");
            var stored = history!["up"]!.AsArray().Select(p => p!["ts"]!.GetValue<long>()).ToHashSet();
            var lostUplinks = uplinked.Count(ts => !stored.Contains(ts));
            output.WriteLine($"uplinks: {uplinked.Count} acknowledged, {stored.Count} stored, {lostUplinks} lost");
            Assert.Equal(0, lostUplinks);

            await edge2.DisposeAsync();
            await collector2;
            restarted.Terminate();
            Assert.Equal(0, await restarted.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            TestDirectories.Delete(dataDir);
        }
    }

    /// <summary>
    /// The narrow window of the test above, made wide: with one commit a second, the edge downlink of a
    /// shared-attribute change is a record of its own, queued when the change is applied. The REST 200
    /// must wait for it too, or a SIGKILL right after the 200 loses the change for the edge for good (the
    /// edge is not full-synced again on reconnect).
    /// </summary>
    [Fact]
    public Task EdgeQueue_SharedAttributeAcknowledgedToRest_ReachesTheEdge_WhenKilledRightAfterThe200() =>
        KilledRightAfterThe200Async(
            "edge-window",
            (rest, device, _) => rest.SaveSharedAsync(device, """{"window":42}"""),
            m => m.EntityData.Any(e => e.AttributesUpdatedMsg?.Kv.Any(kv => kv.Key == "window" && kv.LongV == 42) == true));

    [Fact]
    public Task EdgeQueue_DeviceChangeAcknowledgedToRest_ReachesTheEdge_WhenKilledRightAfterThe200() =>
        KilledRightAfterThe200Async(
            "edge-device-window",
            async (rest, device, name) =>
            {
                var update = new { id = new { entityType = "DEVICE", id = device }, name, type = "default", label = "relabelled-before-kill" };
                (await rest.Http.PostAsJsonAsync("/api/device", update)).EnsureSuccessStatusCode();
            },
            m => m.DeviceUpdateMsg.Any(d => d.Entity.Contains("relabelled-before-kill", StringComparison.Ordinal)));

    /// <summary>
    /// A change of an edge's device acknowledged by REST, then SIGKILL at once (the next group commit is up to a
    /// second away): after a restart the edge, which is not full-synced again, still receives the change.
    /// </summary>
    private static async Task KilledRightAfterThe200Async(string name, Func<TenantRest, Guid, string, Task> change, Func<DownlinkMsg, bool> expected)
    {
        var dataDir = NewDataDir(name);
        var settings = HostFixture.FreePortSettings(dataDir);
        settings["MQTT_ENABLED"] = "false";
        settings["COAP_ENABLED"] = "false";
        settings["TCP_INTEGRATION_ENABLED"] = "false";
        settings["COMMIT_INTERVAL_MS"] = "1000";
        try
        {
            using var first = HostProcess.Start(settings);
            var ports = await first.WaitForDoorsAsync(2, Start);
            var api = new Uri($"http://127.0.0.1:{ports["http"]}");
            using var rest = await TenantRest.LoginAsync(api);
            var routingKey = "rk-" + Guid.NewGuid().ToString("N");
            var edgeJson = await (await rest.Http.PostAsJsonAsync("/api/edge", new { name = name + "-edge", type = "default", routingKey, secret = "s3cret" })).Content.ReadFromJsonAsync<JsonObject>();
            var edgeId = Guid.Parse(edgeJson!["id"]!["id"]!.GetValue<string>());
            var (device, _, deviceName) = await rest.CreateDeviceAsync(name);
            (await rest.Http.PostAsync($"/api/edge/{edgeId}/device/{device}", null)).EnsureSuccessStatusCode();
            await using (var edge = new EdgeTestClient(ports["edges"]))
            {
                Assert.Equal(ConnectResponseCode.Accepted, (await edge.ConnectAsync(routingKey, "s3cret")).ResponseCode);
                await edge.UntilSyncCompletedAsync(TimeSpan.FromSeconds(30));
                await change(rest, device, deviceName);
                first.KillHard();
            }

            using var restarted = await RestartAsync(settings, ports["http"], 2);
            await using var edge2 = new EdgeTestClient(restarted.Ports["edges"]);
            Assert.Equal(ConnectResponseCode.Accepted, (await edge2.ConnectAsync(routingKey, "s3cret")).ResponseCode);
            Assert.NotNull(await edge2.NextDownlinkAsync(expected, TimeSpan.FromSeconds(30)));
            restarted.Terminate();
            Assert.Equal(0, await restarted.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            TestDirectories.Delete(dataDir);
        }
    }

    /// <summary>What one edge session received: shared attribute "v" values per device in arrival order, and devices created.</summary>
    private sealed class EdgeLog
    {
        private readonly Lock _gate = new();
        private readonly Dictionary<Guid, List<long>> _values = [];
        private readonly HashSet<Guid> _devices = [];
        private int _count;

        public int Count => Volatile.Read(ref _count);

        public async Task CollectAsync(EdgeTestClient edge)
        {
            try
            {
                await foreach (var msg in edge.Downlinks.Reader.ReadAllAsync())
                {
                    lock (_gate)
                    {
                        _count++;
                        foreach (var data in msg.EntityData)
                        {
                            var device = EdgeTestClient.Id(data.EntityIdMSB, data.EntityIdLSB);
                            foreach (var kv in data.AttributesUpdatedMsg?.Kv ?? [])
                            {
                                if (kv.Key == "v")
                                {
                                    (_values.TryGetValue(device, out var list) ? list : _values[device] = []).Add(kv.LongV);
                                }
                            }
                        }

                        foreach (var update in msg.DeviceUpdateMsg)
                        {
                            _devices.Add(EdgeTestClient.Id(update.IdMSB, update.IdLSB));
                        }
                    }
                }
            }
            catch (Exception e) when (e is RpcException or ChannelClosedException or OperationCanceledException or IOException)
            {
                // The stream ended with the server. IOException (HttpIOException): the kill came between a downlink's
                // arrival and the write of its ack, so that downlink was never acknowledged and is sent again after
                // the restart (the client records a downlink only after acknowledging it).
            }
        }

        public bool HasValue(Guid device, long v)
        {
            lock (_gate)
            {
                return _values.TryGetValue(device, out var list) && list.Contains(v);
            }
        }

        public bool HasDevice(Guid device)
        {
            lock (_gate)
            {
                return _devices.Contains(device);
            }
        }

        public List<long> Values(Guid device)
        {
            lock (_gate)
            {
                return _values.TryGetValue(device, out var list) ? [.. list] : [];
            }
        }
    }

    private static async Task<List<(Guid Id, string Status, string? Response)>> ListRpcsAsync(HttpClient http, Guid device)
    {
        var page = await http.GetFromJsonAsync<JsonObject>($"/api/rpc/persistent/device/{device}?pageSize=100000&page=0");
        return [.. page!["data"]!.AsArray().Select(r => (
            Guid.Parse(r!["id"]!["id"]!.GetValue<string>()),
            r["status"]!.GetValue<string>(),
            r["response"] is { } response ? response.ToJsonString() : null))];
    }

    /// <summary>What REST reported of one RPC: the furthest state seen and the response of a SUCCESSFUL one.</summary>
    private sealed class RpcSeen(Guid device, int n)
    {
        public Guid Device { get; } = device;
        public int N { get; } = n;
        public string Status { get; private set; } = "QUEUED"; // The 200 with rpcId: stored.
        public string? Response { get; private set; }

        /// <summary>Order of the lifecycle; the terminal states share the top rank and never change.</summary>
        public static int Rank(string status) => status switch
        {
            "QUEUED" => 0,
            "SENT" => 1,
            "DELIVERED" => 2,
            _ => 3,
        };

        public void Observe(string status, string? response)
        {
            lock (this)
            {
                if (Rank(status) >= Rank(Status))
                {
                    Status = status;
                    Response = status == "SUCCESSFUL" ? response : Response;
                }
            }
        }
    }

    private static string NewDataDir(string what) => Path.Combine(Path.GetTempPath(), $"perf-crashload-{what}-" + Guid.NewGuid().ToString("N"));

    /// <summary>Starts the host again on the same settings, its HTTP door on <paramref name="httpPort"/> (REST callers keep their address).</summary>
    private static async Task<HostProcess> RestartAsync(Dictionary<string, string?> settings, int httpPort, int doors)
    {
        var again = new Dictionary<string, string?>(settings) { ["HTTP_BIND_PORT"] = httpPort.ToString(CultureInfo.InvariantCulture) };
        var host = HostProcess.Start(again);
        try
        {
            await host.WaitForDoorsAsync(doors, Start);
            return host;
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }
}

/// <summary>An MQTTnet device that answers server-side RPCs <c>{"n":k}</c> with <c>{"n":k}</c> when <c>answer(k)</c> holds (replies sent off the receive path).</summary>
internal sealed class RpcAnsweringDevice : IAsyncDisposable
{
    private readonly IMqttClient _client;
    private readonly Channel<(int Id, int N)> _requests = Channel.CreateUnbounded<(int, int)>();
    private readonly Task _replier;

    private RpcAnsweringDevice(IMqttClient client, Func<int, bool> answer)
    {
        _client = client;
        client.ApplicationMessageReceivedAsync += e =>
        {
            const string Prefix = "v1/devices/me/rpc/request/";
            var topic = e.ApplicationMessage.Topic;
            if (topic.StartsWith(Prefix, StringComparison.Ordinal))
            {
                var n = JsonNode.Parse(e.ApplicationMessage.ConvertPayloadToString())!["params"]!["n"]!.GetValue<int>();
                if (answer(n))
                {
                    _requests.Writer.TryWrite((int.Parse(topic[Prefix.Length..], CultureInfo.InvariantCulture), n));
                }
            }

            return Task.CompletedTask;
        };
        _replier = Task.Run(async () =>
        {
            await foreach (var (id, n) in _requests.Reader.ReadAllAsync())
            {
                try
                {
                    await _client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic($"v1/devices/me/rpc/response/{id}")
                        .WithPayload($$"""{"n":{{n}}}""").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
                }
                catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or InvalidOperationException or OperationCanceledException)
                {
                    return; // The server is gone.
                }
            }
        });
    }

    public static async Task<RpcAnsweringDevice> ConnectAsync(int port, string token, Func<int, bool> answer)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var device = new RpcAnsweringDevice(client, answer);
        await client.ConnectAsync(MqttDevice.Options(port, token));
        await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter("v1/devices/me/rpc/request/+", MqttQualityOfServiceLevel.AtLeastOnce).Build());
        return device;
    }

    public async ValueTask DisposeAsync()
    {
        _requests.Writer.TryComplete();
        await _replier;
        try
        {
            if (_client.IsConnected)
            {
                await _client.DisconnectAsync();
            }
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
        {
            // The server died under us.
        }

        _client.Dispose();
    }
}
