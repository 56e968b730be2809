using System.Globalization;

namespace Perf.Load;

/// <summary>Reads a local process's resident set size from /proc/&lt;pid&gt;/status (VmRSS, in kB).</summary>
public static class ServerMemory
{
    public static long? RssBytes(int? pid)
    {
        if (pid is null)
        {
            return null;
        }

        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    return long.Parse(parts[1], CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return null;
    }
}
