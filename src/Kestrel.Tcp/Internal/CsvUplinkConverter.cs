using System.Buffers;
using System.Buffers.Text;
using System.Text;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// Built-in converter for <c>name,type,key,value,...</c> lines, the seed's decoder without a script. Values
/// typed like JSON literals: an integer is Long, a number with fraction or exponent Double, true/false
/// Boolean, anything else String (the seed's <c>parseFloat</c> would drop it as NaN). Surrounding
/// whitespace and double quotes are trimmed from every field. Device names and keys are interned, so a
/// steady stream of known devices converts without allocating strings.
/// </summary>
internal sealed class CsvUplinkConverter : IUplinkConverter
{
    private readonly byte _separator;
    private readonly TcpCsvConverterOptions _options;
    private readonly KeyTable _keys;
    private readonly KeyTable _names;
    private readonly string[] _fixedKeys;
    private readonly Func<long> _clock;

    public CsvUplinkConverter(TcpCsvConverterOptions options, KeyTable keys, KeyTable names, Func<long> clock)
    {
        if (options.Separator > 0x7F)
        {
            throw new ArgumentException("the CSV separator must be an ASCII character", nameof(options));
        }

        _separator = (byte)options.Separator;
        _options = options;
        _keys = keys;
        _names = names;
        _fixedKeys = options.Keys is { Count: > 0 } list ? list.Select(keys.Intern).ToArray() : [];
        _clock = clock;
    }

    public bool TryConvert(ReadOnlySpan<byte> payload, UplinkBatch output, out string? error)
    {
        error = null;
        long ts = _clock();
        DecodedUplink? message = null;
        string? pendingKey = null;
        int field = 0;
        int dataIndex = 0;
        while (true)
        {
            int comma = payload.IndexOf(_separator);
            var raw = comma < 0 ? payload : payload[..comma];
            var text = Trim(raw);
            if (field == _options.DeviceNameField)
            {
                if (text.IsEmpty)
                {
                    error = "deviceName is empty or undefined";
                    return false;
                }

                message ??= output.Add();
                message.DeviceName = Intern(_names, text, out error);
                if (error is not null)
                {
                    return false;
                }
            }
            else if (field == _options.DeviceTypeField)
            {
                message ??= output.Add();
                message.DeviceType = text.IsEmpty ? _options.DefaultDeviceType : Intern(_names, text, out error);
                if (error is not null)
                {
                    return false;
                }
            }
            else if (field >= _options.FirstDataField)
            {
                message ??= output.Add();
                if (_fixedKeys.Length > 0)
                {
                    if (dataIndex < _fixedKeys.Length && !text.IsEmpty)
                    {
                        message.Telemetry.Add(new TsKvEntry(ts, ParseValue(_fixedKeys[dataIndex], text)));
                    }
                }
                else if (pendingKey is null)
                {
                    pendingKey = text.IsEmpty ? string.Empty : Intern(_keys, text, out error);
                    if (error is not null)
                    {
                        return false;
                    }
                }
                else
                {
                    if (pendingKey.Length > 0 && !text.IsEmpty)
                    {
                        message.Telemetry.Add(new TsKvEntry(ts, ParseValue(pendingKey, text)));
                    }

                    pendingKey = null;
                }

                dataIndex++;
            }

            field++;
            if (comma < 0)
            {
                break;
            }

            payload = payload[(comma + 1)..];
        }

        if (message is null || message.DeviceName.Length == 0)
        {
            error = "deviceName is empty or undefined";
            return false;
        }

        if (message.DeviceType.Length == 0)
        {
            message.DeviceType = _options.DefaultDeviceType;
        }

        error = null;
        return true;
    }

    private static string Intern(KeyTable table, ReadOnlySpan<byte> text, out string? error)
    {
        try
        {
            error = null;
            return table.Intern(text);
        }
        catch (ArgumentException)
        {
            error = "field is not valid UTF-8";
            return string.Empty;
        }
    }

    private static ReadOnlySpan<byte> Trim(ReadOnlySpan<byte> field)
    {
        field = field.Trim(" \t\r\n"u8);
        if (field.Length >= 2 && field[0] == (byte)'"' && field[^1] == (byte)'"')
        {
            field = field[1..^1];
        }

        return field;
    }

    internal static KvEntry ParseValue(string key, ReadOnlySpan<byte> text)
    {
        if (Utf8Parser.TryParse(text, out long l, out int consumed) && consumed == text.Length)
        {
            return new KvEntry(key, l);
        }

        if (Utf8Parser.TryParse(text, out double d, out consumed) && consumed == text.Length && double.IsFinite(d))
        {
            return new KvEntry(key, d);
        }

        if (text.SequenceEqual("true"u8))
        {
            return new KvEntry(key, true);
        }

        if (text.SequenceEqual("false"u8))
        {
            return new KvEntry(key, false);
        }

        return new KvEntry(key, Encoding.UTF8.GetString(text));
    }
}

/// <summary>Built-in converter for payloads that already are the uplink output shape.</summary>
internal sealed class JsonPassthroughConverter(KeyTable keys, Func<long> clock) : IUplinkConverter
{
    public bool TryConvert(ReadOnlySpan<byte> payload, UplinkBatch output, out string? error) =>
        UplinkOutputReader.TryRead(payload, clock(), keys, output, out error);
}
