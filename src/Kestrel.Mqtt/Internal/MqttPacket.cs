using System.Buffers;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>MQTT 3.1.1 control packet types (§2.2.1).</summary>
internal enum MqttPacketType : byte
{
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
}

/// <summary>CONNACK return codes (§3.2.2.3).</summary>
internal enum MqttConnectReturnCode : byte
{
    Accepted = 0x00,
    UnacceptableProtocolVersion = 0x01,
    IdentifierRejected = 0x02,
    ServerUnavailable = 0x03,
    BadUserNameOrPassword = 0x04,
    NotAuthorized = 0x05,
}

/// <summary>The CONNECT payload; allocated once per connection.</summary>
internal sealed class MqttConnect
{
    public required string ProtocolName { get; init; }
    public required byte ProtocolLevel { get; init; }
    public required bool CleanSession { get; init; }
    public required ushort KeepAliveSeconds { get; init; }
    public required string ClientId { get; init; }
    public string? WillTopic { get; init; }
    public byte[]? WillMessage { get; init; }
    public byte WillQoS { get; init; }
    public bool WillRetain { get; init; }
    /// <summary>UTF-8 user name (for the device API: the access token). Never log it.</summary>
    public byte[]? UserName { get; init; }
    public byte[]? Password { get; init; }
}

/// <summary>
/// One parsed control packet. <see cref="Topic"/> and <see cref="Payload"/> are slices of the input
/// buffer: valid until the caller advances the pipe past them.
/// </summary>
internal readonly struct MqttPacket
{
    public MqttPacket(MqttPacketType type, byte flags, ushort packetId = 0, ReadOnlySequence<byte> topic = default,
        ReadOnlySequence<byte> payload = default, MqttConnect? connect = null, byte connAckFlags = 0, byte returnCode = 0)
    {
        Type = type;
        Flags = flags;
        PacketId = packetId;
        Topic = topic;
        Payload = payload;
        Connect = connect;
        ConnAckFlags = connAckFlags;
        ReturnCode = returnCode;
    }

    public MqttPacketType Type { get; }

    /// <summary>The low nibble of the first byte.</summary>
    public byte Flags { get; }

    public ushort PacketId { get; }

    /// <summary>PUBLISH topic name bytes (validated UTF-8).</summary>
    public ReadOnlySequence<byte> Topic { get; }

    /// <summary>PUBLISH: application message. SUBSCRIBE/UNSUBSCRIBE: the validated filter list (read with <see cref="MqttTopicFilterReader"/>). SUBACK: return codes.</summary>
    public ReadOnlySequence<byte> Payload { get; }

    public MqttConnect? Connect { get; }

    public byte ConnAckFlags { get; }

    /// <summary>CONNACK return code.</summary>
    public byte ReturnCode { get; }

    public int QoS => (Flags >> 1) & 0x03;
    public bool Dup => (Flags & 0x08) != 0;
    public bool Retain => (Flags & 0x01) != 0;
    public bool SessionPresent => (ConnAckFlags & 0x01) != 0;
}

/// <summary>Enumerates a validated SUBSCRIBE/UNSUBSCRIBE payload without allocating.</summary>
internal ref struct MqttTopicFilterReader
{
    private SequenceReader<byte> _reader;
    private readonly bool _hasQoS;

    public MqttTopicFilterReader(in MqttPacket packet)
    {
        _reader = new SequenceReader<byte>(packet.Payload);
        _hasQoS = packet.Type == MqttPacketType.Subscribe;
    }

    public bool TryNext(out ReadOnlySequence<byte> filter, out byte requestedQoS)
    {
        requestedQoS = 0;
        if (!_reader.TryReadBigEndian(out short len))
        {
            filter = default;
            return false;
        }

        filter = _reader.UnreadSequence.Slice(0, (ushort)len);
        _reader.Advance((ushort)len);
        if (_hasQoS)
        {
            _reader.TryRead(out requestedQoS);
        }

        return true;
    }
}
