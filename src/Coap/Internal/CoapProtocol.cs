namespace Perf.Coap.Internal;

/// <summary>RFC 7252 §3 message types.</summary>
internal enum CoapMessageType : byte
{
    Confirmable = 0,
    NonConfirmable = 1,
    Acknowledgement = 2,
    Reset = 3,
}

/// <summary>Codes as the header byte carries them: class (3 bits) and detail (5 bits), RFC 7252 §12.1.</summary>
internal static class CoapCode
{
    public const byte Empty = 0x00;
    public const byte Get = 0x01, Post = 0x02, Put = 0x03, Delete = 0x04;
    public const byte Created = 0x41, Deleted = 0x42, Valid = 0x43, Changed = 0x44, Content = 0x45, Continue = 0x5F; // 2.31 RFC 7959 §2.9.1
    public const byte BadRequest = 0x80, Unauthorized = 0x81, BadOption = 0x82, Forbidden = 0x83, NotFound = 0x84, MethodNotAllowed = 0x85;
    public const byte RequestEntityIncomplete = 0x88, RequestEntityTooLarge = 0x8D, UnsupportedContentFormat = 0x8F;
    public const byte TooManyRequests = 0x9D; // RFC 8516
    public const byte InternalServerError = 0xA0, ServiceUnavailable = 0xA3, GatewayTimeout = 0xA4;

    public static bool IsRequest(byte code) => code is >= 0x01 and <= 0x1F;

    /// <summary>"c.dd" for logs and tests.</summary>
    public static string Format(byte code) => $"{code >> 5}.{code & 0x1F:D2}";
}

/// <summary>Option numbers used by this server (RFC 7252 §5.10, RFC 7641 §2, RFC 7959 §2.1, §4).</summary>
internal static class CoapOptionNumber
{
    public const ushort IfMatch = 1, UriHost = 3, ETag = 4, IfNoneMatch = 5, Observe = 6, UriPort = 7, LocationPath = 8;
    public const ushort UriPath = 11, ContentFormat = 12, MaxAge = 14, UriQuery = 15, Accept = 17, LocationQuery = 20;
    public const ushort Block2 = 23, Block1 = 27, Size2 = 28, ProxyUri = 35, ProxyScheme = 39, Size1 = 60, NoResponse = 258;

    /// <summary>RFC 7252 §5.4.1: odd option numbers are critical.</summary>
    public static bool IsCritical(ushort number) => (number & 1) != 0;

    /// <summary>Critical options this server understands; any other critical option in a request is answered 4.02.</summary>
    public static bool IsKnownCritical(ushort number) =>
        number is IfMatch or UriHost or IfNoneMatch or UriPort or UriPath or UriQuery or Accept or Block2 or Block1;
}

/// <summary>RFC 7252 §12.3 content formats.</summary>
internal static class CoapContentFormat
{
    public const ushort TextPlain = 0, OctetStream = 42, Json = 50;
}

/// <summary>RFC 7252 §4.8 transmission parameters.</summary>
internal static class CoapTransmission
{
    public static readonly TimeSpan AckTimeout = TimeSpan.FromSeconds(2);
    public const double AckRandomFactor = 1.5;
    public const int MaxRetransmit = 4;

    /// <summary>§4.8.2 EXCHANGE_LIFETIME = MAX_TRANSMIT_SPAN + 2 * MAX_LATENCY + PROCESSING_DELAY = 247 s.</summary>
    public static readonly TimeSpan ExchangeLifetime = TimeSpan.FromSeconds(247);

    /// <summary>How long the server may hold a CON request before answering with an empty ACK (§5.2.2).</summary>
    public static readonly TimeSpan PiggybackWindow = TimeSpan.FromMilliseconds(500);
}

/// <summary>Why a datagram is not a CoAP message (RFC 7252 §3, §3.1, §3.2).</summary>
internal enum CoapFormatError : byte
{
    TooShort = 1,
    UnknownVersion,
    TokenLengthReserved,
    TruncatedToken,
    ReservedOptionNibble,
    TruncatedOption,
    EmptyPayloadAfterMarker,
    OptionNumberOverflow,
    EmptyMessageNotEmpty,
    BadBlockOption,
}

internal sealed class CoapFormatException(CoapFormatError reason) : Exception($"malformed CoAP message: {reason}")
{
    public CoapFormatError Reason { get; } = reason;
}

internal static class CoapThrow
{
    [System.Diagnostics.CodeAnalysis.DoesNotReturn, System.Diagnostics.StackTraceHidden]
    public static void Format(CoapFormatError reason) => throw new CoapFormatException(reason);
}
