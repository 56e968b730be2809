using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace Perf.EndToEnd;

/// <summary>The host started as a child process (<c>dotnet Perf.Api.dll</c>), for shutdown and crash tests.</summary>
public sealed partial class HostProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentDictionary<string, int> _ports = new();
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly SemaphoreSlim _doorBound = new(0);

    private HostProcess(Process process)
    {
        _process = process;
    }

    public int Pid => _process.Id;

    public IReadOnlyDictionary<string, int> Ports => _ports;

    public string Output => string.Join('\n', _lines);

    /// <param name="openFileLimit">The process's open-file limit (soft and hard), set with util-linux's <c>prlimit</c>; the inherited limit when null.</param>
    public static HostProcess Start(IReadOnlyDictionary<string, string?> environment, int? openFileLimit = null)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Perf.Api.dll");
        var info = openFileLimit is { } limit
            ? new ProcessStartInfo("prlimit", [$"--nofile={limit}:{limit}", "dotnet", dll])
            : new ProcessStartInfo("dotnet", [dll]);
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        info.WorkingDirectory = AppContext.BaseDirectory;
        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        info.Environment["Logging__Console__FormatterOptions__SingleLine"] = "true";
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var host = new HostProcess(process);
        process.OutputDataReceived += (_, e) => host.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => host.OnLine(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return host;
    }

    /// <summary>Waits until <paramref name="count"/> doors have logged their bound address.</summary>
    public async Task<IReadOnlyDictionary<string, int>> WaitForDoorsAsync(int count, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (_ports.Count < count)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException("host exited early:\n" + Output);
            }

            try
            {
                await _doorBound.WaitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"only {_ports.Count} of {count} doors bound within {timeout}:\n{Output}");
            }
        }

        return _ports;
    }

    /// <summary>SIGTERM, as an init system or `kill` sends it.</summary>
    public void Terminate() => _ = Kill(_process.Id, 15);

    /// <summary>SIGKILL: the crash case.</summary>
    public void KillHard()
    {
        if (!_process.HasExited)
        {
            _ = Kill(_process.Id, 9);
            _process.WaitForExit();
        }
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    public void Dispose()
    {
        Kill();
        _process.Dispose();
        _doorBound.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        _lines.Enqueue(line);
        var match = DoorBoundLine().Match(line);
        if (match.Success && _ports.TryAdd(match.Groups[1].Value, int.Parse(match.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)))
        {
            _doorBound.Release();
        }
    }

    [GeneratedRegex(@"Door (\S+) listening on \S+://[^\s]*:(\d+)")]
    private static partial Regex DoorBoundLine();

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);
}
