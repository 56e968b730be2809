namespace Perf.Core.Telemetry;

/// <summary>Why a JSON payload was rejected and where: <paramref name="BytePosition"/> is a 0-based offset into the payload.</summary>
public readonly record struct JsonParseError(string Message, long BytePosition)
{
    public override string ToString() => Message;
}
