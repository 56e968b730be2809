using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>Why a connection is being closed for a protocol violation. Names the cause, never the data.</summary>
internal enum MqttProtocolError : byte
{
    None = 0,
    /// <summary>Packet type 0 or 15 (§2.2.1).</summary>
    ReservedPacketType,
    /// <summary>Fixed-header flags not as §2.2.2 requires.</summary>
    InvalidFixedHeaderFlags,
    /// <summary>Remaining length longer than 4 bytes (§2.2.3).</summary>
    MalformedRemainingLength,
    /// <summary>Remaining length above the configured limit; rejected before the body is buffered.</summary>
    PacketTooLarge,
    /// <summary>A packet with a fixed size (CONNACK, PUBACK, PINGREQ, ...) had another remaining length.</summary>
    InvalidRemainingLength,
    /// <summary>The body ended early or had bytes left over.</summary>
    MalformedPacket,
    /// <summary>Ill-formed UTF-8, a surrogate or U+0000 in a string (§1.5.3).</summary>
    InvalidUtf8String,
    /// <summary>Protocol name/level other than MQTT/4 or MQIsdp/3 (§3.1.2.1, §3.1.2.2): CONNACK 0x01.</summary>
    UnacceptableProtocolVersion,
    /// <summary>CONNECT flags bit 0 set (§3.1.2.3).</summary>
    ConnectReservedFlag,
    /// <summary>Will QoS/retain set without the will flag, or will QoS 3 (§3.1.2.5-§3.1.2.7).</summary>
    InvalidWillFlags,
    /// <summary>Password flag without user name flag (§3.1.2.9).</summary>
    PasswordWithoutUserName,
    /// <summary>Empty client id with clean session 0 (§3.1.3.1): CONNACK 0x02.</summary>
    IdentifierRejected,
    /// <summary>Packet identifier 0 where one is required (§2.3.1).</summary>
    ZeroPacketId,
    /// <summary>QoS 3 (§3.3.1.2).</summary>
    InvalidQoS,
    /// <summary>DUP set on a QoS 0 PUBLISH (§3.3.1.1).</summary>
    DupOnQoS0,
    /// <summary>'+' or '#' in a PUBLISH topic name (§3.3.2.1).</summary>
    WildcardInTopicName,
    /// <summary>Zero-length topic name or filter (§4.7.3).</summary>
    EmptyTopic,
    /// <summary>Wildcard not occupying a whole level, or '#' not last (§4.7.1).</summary>
    InvalidTopicFilter,
    /// <summary>SUBSCRIBE/UNSUBSCRIBE without a topic filter (§3.8.3, §3.10.3).</summary>
    EmptySubscription,
    /// <summary>SUBSCRIBE requested QoS reserved bits set or QoS 3 (§3.8.3.1).</summary>
    InvalidSubscribeOptions,
    /// <summary>SUBACK return code other than 0x00, 0x01, 0x02, 0x80 (§3.9.3).</summary>
    InvalidSubAckReturnCode,
    /// <summary>CONNACK acknowledge flags reserved bits set (§3.2.2.1).</summary>
    InvalidConnAckFlags,

    // Session-level violations found by the connection handler.

    /// <summary>The first packet was not CONNECT (§3.1).</summary>
    FirstPacketNotConnect,
    /// <summary>A second CONNECT on the same connection (§3.1).</summary>
    SecondConnect,
    /// <summary>A packet only a server sends (CONNACK, SUBACK, ...) arrived from the client.</summary>
    UnexpectedPacket,
    /// <summary>PUBLISH payload above MaxPayloadSize.</summary>
    PayloadTooLarge,
    /// <summary>QoS 2 PUBLISH: the device API supports QoS 0 and 1.</summary>
    QoS2NotSupported,
}

/// <summary>A protocol violation; the handler maps <see cref="Error"/> to the wire and closes.</summary>
internal sealed class MqttProtocolException(MqttProtocolError error) : Exception(error.ToString())
{
    public MqttProtocolError Error { get; } = error;

    [DoesNotReturn, StackTraceHidden]
    public static void Throw(MqttProtocolError error) => throw new MqttProtocolException(error);
}
