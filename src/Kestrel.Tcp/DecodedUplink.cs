using System.Text;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Tcp;

/// <summary>
/// One message of an uplink converter's output, in the reference's shape
/// <c>{deviceName, deviceType, attributes:{}, telemetry:{} | [{ts,values}]}</c>. Instances and their
/// lists are reused from frame to frame on a connection.
/// </summary>
public sealed class DecodedUplink
{
    public string DeviceName { get; internal set; } = string.Empty;
    public string DeviceType { get; internal set; } = string.Empty;
    public List<TsKvEntry> Telemetry { get; } = [];
    public List<KvEntry> Attributes { get; } = [];

    internal void Clear()
    {
        DeviceName = string.Empty;
        DeviceType = string.Empty;
        Telemetry.Clear();
        Attributes.Clear();
    }

    /// <summary>A readable rendering for converter events (debug mode and the test endpoint).</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        sb.Append("{deviceName=").Append(DeviceName).Append(", deviceType=").Append(DeviceType).Append(", telemetry=[");
        for (int i = 0; i < Telemetry.Count; i++)
        {
            sb.Append(i == 0 ? "" : ", ").Append(Telemetry[i].Ts).Append(':').Append(Telemetry[i].Entry.Key).Append('=').Append(Telemetry[i].Entry.ValueAsString());
        }

        sb.Append("], attributes=[");
        for (int i = 0; i < Attributes.Count; i++)
        {
            sb.Append(i == 0 ? "" : ", ").Append(Attributes[i].Key).Append('=').Append(Attributes[i].ValueAsString());
        }

        return sb.Append("]}").ToString();
    }
}

/// <summary>The messages one frame decoded to (a converter may return an array). Reused per connection.</summary>
public sealed class UplinkBatch
{
    private readonly List<DecodedUplink> _items = [];

    public int Count { get; private set; }

    public DecodedUplink this[int index] => index < Count ? _items[index] : throw new ArgumentOutOfRangeException(nameof(index));

    internal DecodedUplink Add()
    {
        if (Count == _items.Count)
        {
            _items.Add(new DecodedUplink());
        }

        var item = _items[Count++];
        item.Clear();
        return item;
    }

    /// <summary>Empties the batch for the next frame; the message objects and their lists are kept for reuse.</summary>
    public void Clear() => Count = 0;

    public override string ToString()
    {
        var sb = new StringBuilder("[");
        for (int i = 0; i < Count; i++)
        {
            sb.Append(i == 0 ? "" : ", ").Append(_items[i]);
        }

        return sb.Append(']').ToString();
    }
}
