using System.Text;

namespace Perf.Coap.Internal;

/// <summary>The device resource a request names: <c>/api/v1/{token}/{resource}[/{id}]</c>.</summary>
internal enum CoapResource : byte
{
    Unknown = 0,
    Telemetry,
    Attributes,
    Rpc,
    RpcReply,
    Claim,
    Firmware,
}

/// <summary>The options of a request that the server acts on, read in one pass over the option region.</summary>
internal ref struct CoapRequest
{
    public CoapResource Resource;
    public ReadOnlySpan<byte> AccessToken;
    public int RpcId;
    public uint? Observe;
    public ushort? ContentFormat;
    public CoapBlock? Block1;
    public CoapBlock? Block2;
    public int? Size1;
    public bool HasUnknownCritical;
    public bool HasBadBlock;

    /// <summary>A Block1 or Block2 with SZX 7, reserved: RFC 7959 §2.2 answers it 4.00 (not 4.02).</summary>
    public bool HasReservedBlockSize;
    public ReadOnlySpan<byte> OptionBytes;
    public uint PathHash;

    public static CoapRequest Read(in CoapMessageReader message)
    {
        var request = new CoapRequest { OptionBytes = message.OptionBytes, PathHash = 2166136261 };
        var segment = 0;
        ReadOnlySpan<byte> resource = default, id = default;
        var pathOk = true;
        foreach (var option in message.Options)
        {
            switch (option.Number)
            {
                case CoapOptionNumber.UriPath:
                    foreach (var b in option.Value)
                    {
                        request.PathHash = (request.PathHash ^ b) * 16777619; // FNV-1a, keys block-wise uploads by URI
                    }

                    request.PathHash = (request.PathHash ^ '/') * 16777619;
                    pathOk &= segment switch
                    {
                        0 => option.Value.SequenceEqual("api"u8),
                        1 => option.Value.SequenceEqual("v1"u8),
                        _ => true,
                    };
                    if (segment == 2)
                    {
                        request.AccessToken = option.Value;
                    }
                    else if (segment == 3)
                    {
                        resource = option.Value;
                    }
                    else if (segment == 4)
                    {
                        id = option.Value;
                    }

                    segment++;
                    break;
                case CoapOptionNumber.Observe:
                    request.Observe = option.GetUInt();
                    break;
                case CoapOptionNumber.ContentFormat:
                    request.ContentFormat = (ushort)option.GetUInt();
                    break;
                case CoapOptionNumber.Block1:
                    request.HasReservedBlockSize |= option.Value.Length <= 3 && (option.GetUInt() & 0x7) == 7;
                    request.HasBadBlock |= option.Value.Length > 3 || !CoapBlock.TryDecode(option.GetUInt(), out var b1);
                    request.Block1 = CoapBlock.TryDecode(option.GetUInt(), out b1) ? b1 : null;
                    break;
                case CoapOptionNumber.Block2:
                    request.HasReservedBlockSize |= option.Value.Length <= 3 && (option.GetUInt() & 0x7) == 7;
                    request.HasBadBlock |= option.Value.Length > 3 || !CoapBlock.TryDecode(option.GetUInt(), out var b2);
                    request.Block2 = CoapBlock.TryDecode(option.GetUInt(), out b2) ? b2 : null;
                    break;
                case CoapOptionNumber.Size1:
                    request.Size1 = (int)Math.Min(option.GetUInt(), int.MaxValue);
                    break;
                default:
                    request.HasUnknownCritical |= CoapOptionNumber.IsCritical(option.Number) && !CoapOptionNumber.IsKnownCritical(option.Number);
                    break;
            }
        }

        if (!pathOk || segment < 4 || segment > 5 || request.AccessToken.IsEmpty)
        {
            return request;
        }

        request.Resource = segment == 5
            ? resource.SequenceEqual("rpc"u8) && TryParseId(id, out request.RpcId) ? CoapResource.RpcReply : CoapResource.Unknown
            : resource switch
            {
                _ when resource.SequenceEqual("telemetry"u8) => CoapResource.Telemetry,
                _ when resource.SequenceEqual("attributes"u8) => CoapResource.Attributes,
                _ when resource.SequenceEqual("rpc"u8) => CoapResource.Rpc,
                _ when resource.SequenceEqual("claim"u8) => CoapResource.Claim,
                _ when resource.SequenceEqual("firmware"u8) => CoapResource.Firmware,
                _ => CoapResource.Unknown,
            };
        return request;
    }

    /// <summary>Whether the request carries any Uri-Query option.</summary>
    public readonly bool HasQuery
    {
        get
        {
            foreach (var option in new CoapOptionEnumerator(OptionBytes))
            {
                if (option.Number == CoapOptionNumber.UriQuery)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>The value of Uri-Query <c>name=value</c>, or null.</summary>
    public readonly string? Query(ReadOnlySpan<byte> name)
    {
        foreach (var option in new CoapOptionEnumerator(OptionBytes))
        {
            if (option.Number == CoapOptionNumber.UriQuery && option.Value.Length > name.Length &&
                option.Value.StartsWith(name) && option.Value[name.Length] == (byte)'=')
            {
                return Encoding.UTF8.GetString(option.Value[(name.Length + 1)..]);
            }
        }

        return null;
    }

    private static bool TryParseId(ReadOnlySpan<byte> text, out int id) =>
        System.Buffers.Text.Utf8Parser.TryParse(text, out id, out var consumed) && consumed == text.Length;
}
