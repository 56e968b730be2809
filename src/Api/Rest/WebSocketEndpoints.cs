using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Perf.Core;
using Perf.Core.Domain;

namespace Perf.Api.Rest;

/// <summary>
/// Live data over WebSocket: <c>/api/ws</c> (first frame <c>{"authCmd":{"token"}}</c>, then <c>{"cmds":[...]}</c>)
/// and the legacy <c>/api/ws/plugins/telemetry?token=</c> (<c>{"tsSubCmds":[...],"attrSubCmds":[...]}</c>).
/// Each subscription first sends the current values, then every committed update.
/// </summary>
internal static class WebSocketEndpoints
{
    private const int MaxMessageBytes = 64 * 1024;

    // The reference's subscription error codes (SubscriptionErrorCode) and its message for a refused entity.
    private const int BadRequest = 2;
    private const int Unauthorized = 3;
    private const string UnauthorizedMessage = "You don't have permission to perform this operation!";
    private const string HistoryArguments = "startTs, endTs, timeWindow, interval and limit must be numbers; agg one of NONE, MIN, MAX, AVG, SUM, COUNT";

    public static void MapWebSocketEndpoints(this WebApplication app)
    {
        app.Map("/api/ws", context => Serve(context, legacyToken: null));
        app.Map("/api/ws/plugins/telemetry", context => Serve(context, context.Request.Query["token"].ToString()));
    }

    private static async Task Serve(HttpContext context, string? legacyToken)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await ApiError.WriteAsync(context, 400, "WebSocket upgrade expected", ErrorCode.BadRequestParams);
            return;
        }

        var jwt = context.RequestServices.GetRequiredService<JwtService>();
        var engine = context.RequestServices.GetRequiredService<PerfEngine>();
        AuthUser? user = null;
        if (legacyToken is not null && JwtAuthFilter.Authenticate(jwt, engine.Registry, legacyToken, out user) != TokenCheck.Valid)
        {
            await ApiError.WriteAsync(context, 401, "Invalid or expired token", ErrorCode.Authentication);
            return;
        }

        using var socket = await context.WebSockets.AcceptWebSocketAsync();
        await using var session = new WsSession(socket, engine, jwt, user, legacy: legacyToken is not null);
        await session.RunAsync(context.RequestAborted);
    }

    private sealed class WsSession(WebSocket socket, PerfEngine engine, JwtService jwt, AuthUser? user, bool legacy) : IAsyncDisposable
    {
        private readonly Channel<string> _outgoing = Channel.CreateBounded<string>(new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.DropOldest });
        private readonly Dictionary<int, IDisposable> _subscriptions = [];
        private AuthUser? _user = user;
        private volatile string? _closeReason;

        public async Task RunAsync(CancellationToken cancellationToken)
        {
            var writer = Task.Run(() => WriteLoopAsync(cancellationToken), cancellationToken);
            var buffer = new byte[MaxMessageBytes];
            try
            {
                while (socket.State == WebSocketState.Open)
                {
                    var length = 0;
                    ValueWebSocketReceiveResult result;
                    do
                    {
                        if (length == buffer.Length)
                        {
                            await socket.CloseAsync(WebSocketCloseStatus.MessageTooBig, "message too big", cancellationToken);
                            return;
                        }

                        result = await socket.ReceiveAsync(buffer.AsMemory(length), cancellationToken);
                        length += result.Count;
                    }
                    while (!result.EndOfMessage && result.MessageType != WebSocketMessageType.Close);

                    if (result.MessageType == WebSocketMessageType.Close)
                    {
                        if (socket.State == WebSocketState.CloseReceived && _closeReason is null)
                        {
                            await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                        }

                        return;
                    }

                    Handle(buffer.AsSpan(0, length));
                }
            }
            catch (WebSocketException)
            {
                // The peer went away without a close handshake.
            }
            catch (OperationCanceledException)
            {
                // Host shutdown or aborted request.
            }
            finally
            {
                _outgoing.Writer.TryComplete();
                await writer.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }

        private void Handle(ReadOnlySpan<byte> message)
        {
            JsonObject? root;
            try
            {
                root = JsonNode.Parse(message) as JsonObject;
            }
            catch (JsonException ex)
            {
                Send(new JsonObject { ["errorCode"] = 2, ["errorMsg"] = $"Invalid JSON: {ex.Message}" });
                return;
            }

            if (root is null)
            {
                Send(new JsonObject { ["errorCode"] = 2, ["errorMsg"] = "Expected a JSON object" });
                return;
            }

            if (root["authCmd"] is JsonObject auth)
            {
                var token = auth["token"] is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;
                if (JwtAuthFilter.Authenticate(jwt, engine.Registry, token, out var authenticated) != TokenCheck.Valid)
                {
                    Send(new JsonObject { ["cmdId"] = auth["cmdId"]?.DeepClone(), ["errorCode"] = 10, ["errorMsg"] = "Invalid or expired token" });
                    CloseAfterSending("authentication failed");
                    return;
                }

                _user = authenticated;
            }

            if (_user is null)
            {
                Send(new JsonObject { ["errorCode"] = 10, ["errorMsg"] = "Send authCmd with a token first" });
                CloseAfterSending("not authenticated");
                return;
            }

            if (root["cmds"] is JsonArray cmds)
            {
                foreach (var cmd in cmds.OfType<JsonObject>())
                {
                    var type = cmd["type"]?.GetValue<string>();
                    Command(cmd, type == "ATTRIBUTES" ? DeviceUpdateKind.Attributes : DeviceUpdateKind.Telemetry, type is "TIMESERIES" or "ATTRIBUTES");
                }
            }

            foreach (var (name, kind) in new[] { ("tsSubCmds", DeviceUpdateKind.Telemetry), ("attrSubCmds", DeviceUpdateKind.Attributes) })
            {
                if (root[name] is JsonArray list)
                {
                    foreach (var cmd in list.OfType<JsonObject>())
                    {
                        Command(cmd, kind, known: true);
                    }
                }
            }

            if (root["historyCmds"] is JsonArray history)
            {
                foreach (var cmd in history.OfType<JsonObject>())
                {
                    History(cmd);
                }
            }
        }

        /// <summary>
        /// The reference's one-shot history query (<c>historyCmds</c>): keys, startTs, endTs, interval, limit (0: 100)
        /// and agg (absent: NONE), answered once with every key's points (<see cref="TryHistory"/>).
        /// </summary>
        private void History(JsonObject cmd)
        {
            var cmdId = cmd["cmdId"] is JsonValue idValue && idValue.TryGetValue<int>(out var id) ? id : 0;
            if (!Guid.TryParse(cmd["entityId"]?.GetValue<string>(), out var deviceId))
            {
                Send(Error(cmdId, BadRequest, "Device id is empty!"));
                return;
            }

            if (KvJson.Keys(cmd["keys"] is JsonValue k && k.TryGetValue<string>(out var csv) ? csv : null) is not { Length: > 0 } keys)
            {
                Send(Error(cmdId, BadRequest, "Keys are empty!"));
                return;
            }

            if (engine.Registry.GetDevice(deviceId) is not { } device || !Access.CanSee(_user!, device))
            {
                Send(Error(cmdId, Unauthorized, UnauthorizedMessage));
                return;
            }

            if (!Number(cmd, "startTs", out var startTs) || !Number(cmd, "endTs", out var endTs) || !TryHistory(cmd, deviceId, keys, startTs, endTs, out var data))
            {
                Send(Error(cmdId, BadRequest, HistoryArguments));
                return;
            }

            Send(Update(cmdId, data));
        }

        /// <summary>
        /// Every key's points in [<paramref name="startTs"/>, <paramref name="endTs"/>] by the command's interval, limit
        /// (0: 100) and agg (absent: NONE), raw points newest first and buckets oldest first, values as strings: what the
        /// reference's <c>tsService.findAll</c>
        /// answers a history command or a subscription with a time window. False when a member is not what it should be.
        /// </summary>
        private bool TryHistory(JsonObject cmd, Guid deviceId, string[] keys, long startTs, long endTs, out JsonObject data)
        {
            data = new JsonObject();
            var agg = cmd["agg"] is JsonValue a && a.TryGetValue<string>(out var aggText) && aggText.Length > 0 ? aggText : "NONE";
            if (!Enum.TryParse<Aggregation>(agg, ignoreCase: true, out var aggregation) || !Enum.IsDefined(aggregation) ||
                !Number(cmd, "interval", out var interval) || !Number(cmd, "limit", out var limit))
            {
                return false;
            }

            foreach (var key in keys)
            {
                var points = new JsonArray();
                var found = engine.Telemetry.Query(deviceId, key, startTs, endTs, interval, limit == 0 ? 100 : (int)Math.Clamp(limit, 1, int.MaxValue), aggregation, descending: true);
                foreach (var point in found)
                {
                    points.Add(new JsonArray(point.Ts, KvJson.Value(point.Entry, strict: false)));
                }

                data[key] = points;
            }

            return true;
        }

        /// <summary>A member as a whole number (a fraction cut off); absent or null is 0.</summary>
        private static bool Number(JsonObject cmd, string name, out long value)
        {
            value = 0;
            if (cmd[name] is not JsonValue v || v.TryGetValue(out value))
            {
                return true;
            }

            if (v.TryGetValue<double>(out var d) && d >= long.MinValue && d < long.MaxValue)
            {
                value = (long)d;
                return true;
            }

            return false;
        }

        private void Command(JsonObject cmd, DeviceUpdateKind kind, bool known)
        {
            var cmdId = cmd["cmdId"] is JsonValue idValue && idValue.TryGetValue<int>(out var id) ? id : 0;
            if (cmd["unsubscribe"] is JsonValue u && u.TryGetValue<bool>(out var unsubscribe) && unsubscribe)
            {
                // As the reference: without an entity id, every subscription of the session ends.
                if (cmd["entityId"] is not JsonValue entity || !entity.TryGetValue<string>(out var entityText) || entityText.Length == 0)
                {
                    foreach (var subscription in _subscriptions.Values)
                    {
                        subscription.Dispose();
                    }

                    _subscriptions.Clear();
                }
                else if (_subscriptions.Remove(cmdId, out var existing))
                {
                    existing.Dispose();
                }

                return;
            }

            if (!known)
            {
                Send(Error(cmdId, BadRequest, $"Unsupported command type '{cmd["type"]}'"));
                return;
            }

            if (!Guid.TryParse(cmd["entityId"]?.GetValue<string>(), out var deviceId) || engine.Registry.GetDevice(deviceId) is not { } device ||
                !Access.CanSee(_user!, device))
            {
                Send(Error(cmdId, Unauthorized, UnauthorizedMessage));
                return;
            }

            var keys = KvJson.Keys(cmd["keys"]?.GetValue<string>());
            var keySet = keys is null ? null : new HashSet<string>(keys, StringComparer.Ordinal);
            AttributeScope? scope = cmd["scope"]?.GetValue<string>() switch
            {
                "CLIENT_SCOPE" => AttributeScope.Client,
                "SERVER_SCOPE" => AttributeScope.Server,
                "SHARED_SCOPE" => AttributeScope.Shared,
                _ => null,
            };

            if (_subscriptions.Remove(cmdId, out var previous))
            {
                previous.Dispose();
            }

            // Current values first, then committed updates. A time series subscription naming its keys and a time
            // window gets that window's history first, as the reference's handleWsTimeseriesSubscriptionByKeys.
            var initial = new JsonObject();
            long timeWindow = 0, startTs = 0;
            if (kind == DeviceUpdateKind.Telemetry && keys is { Length: > 0 } && (!Number(cmd, "timeWindow", out timeWindow) || !Number(cmd, "startTs", out startTs)))
            {
                Send(Error(cmdId, BadRequest, HistoryArguments));
                return;
            }

            if (timeWindow > 0)
            {
                long endTs = startTs > long.MaxValue - timeWindow ? long.MaxValue : startTs + timeWindow;
                if (!TryHistory(cmd, deviceId, keys!, startTs, endTs, out initial))
                {
                    Send(Error(cmdId, BadRequest, HistoryArguments));
                    return;
                }
            }
            else if (kind == DeviceUpdateKind.Telemetry)
            {
                foreach (var latest in engine.Telemetry.GetLatest(deviceId, keys))
                {
                    initial[latest.Entry.Key] = new JsonArray(new JsonArray(latest.Ts, KvJson.Value(latest.Entry, strict: false)));
                }
            }
            else
            {
                foreach (var s in scope is { } one ? [one] : new[] { AttributeScope.Client, AttributeScope.Shared, AttributeScope.Server })
                {
                    foreach (var attribute in engine.Attributes.Get(deviceId, s, keys))
                    {
                        initial[attribute.Entry.Key] = new JsonArray(new JsonArray(attribute.LastUpdateTs, KvJson.Value(attribute.Entry, strict: false)));
                    }
                }
            }

            Send(Update(cmdId, initial));
            _subscriptions[cmdId] = engine.Telemetry.Subscribe(deviceId, update =>
            {
                if (update.Kind != kind || (kind == DeviceUpdateKind.Attributes && scope is not null && update.Scope != scope))
                {
                    return;
                }

                var data = new JsonObject();
                foreach (var entry in update.Entries)
                {
                    if (keySet is null || keySet.Contains(entry.Entry.Key))
                    {
                        var point = new JsonArray(entry.Ts, KvJson.Value(entry.Entry, strict: false));
                        if (data[entry.Entry.Key] is JsonArray existing)
                        {
                            existing.Add(point);
                        }
                        else
                        {
                            data[entry.Entry.Key] = new JsonArray(point);
                        }
                    }
                }

                if (data.Count > 0)
                {
                    Send(Update(cmdId, data));
                }
            });
        }

        private JsonObject Update(int cmdId, JsonObject data) => new()
        {
            ["subscriptionId"] = cmdId,
            ["errorCode"] = 0,
            ["errorMsg"] = null,
            ["data"] = data,
            ["latestValues"] = legacy ? null : Latest(data),
        };

        private static JsonObject Latest(JsonObject data)
        {
            var latest = new JsonObject();
            foreach (var (key, value) in data)
            {
                if (value is JsonArray points && points.Count > 0 && points[^1] is JsonArray last)
                {
                    latest[key] = last[0]?.DeepClone();
                }
            }

            return latest;
        }

        private static JsonObject Error(int cmdId, int code, string message) => new()
        {
            ["subscriptionId"] = cmdId,
            ["errorCode"] = code,
            ["errorMsg"] = message,
        };

        private void Send(JsonObject message) => _outgoing.Writer.TryWrite(message.ToJsonString());

        /// <summary>
        /// Policy close after the error already queued: the write loop sends the error, then the close frame
        /// (a close started beside the loop could overtake the error, and two sends at once are not allowed).
        /// </summary>
        private void CloseAfterSending(string reason)
        {
            _closeReason ??= reason;
            _outgoing.Writer.TryComplete();
        }

        private async Task WriteLoopAsync(CancellationToken cancellationToken)
        {
            await foreach (var text in _outgoing.Reader.ReadAllAsync(cancellationToken))
            {
                if (socket.State != WebSocketState.Open)
                {
                    break;
                }

                await socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, endOfMessage: true, cancellationToken);
            }

            if (_closeReason is { } reason && socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                await socket.CloseOutputAsync(WebSocketCloseStatus.PolicyViolation, reason, CancellationToken.None);
            }
        }

        public ValueTask DisposeAsync()
        {
            foreach (var subscription in _subscriptions.Values)
            {
                subscription.Dispose();
            }

            _subscriptions.Clear();
            return ValueTask.CompletedTask;
        }
    }
}
