using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Core;

public enum DeviceUpdateKind : byte
{
    Telemetry = 1,
    Attributes = 2,
}

/// <summary>
/// A committed change of a device's telemetry or attributes, delivered to in-process subscribers
/// (WebSocket, edge). For attributes <see cref="Scope"/> is set and each entry's Ts is its lastUpdateTs.
/// <see cref="Origin"/> is the edge the change came from (<see cref="Guid.Empty"/> otherwise): it is not echoed back to it.
/// </summary>
public sealed record DeviceUpdate(
    Guid DeviceId,
    DeviceUpdateKind Kind,
    AttributeScope? Scope,
    IReadOnlyList<TsKvEntry> Entries,
    IReadOnlyList<string> DeletedKeys,
    Guid Origin = default);
