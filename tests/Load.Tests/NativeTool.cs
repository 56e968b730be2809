using System.Diagnostics;

namespace Perf.Load.Tests;

/// <summary>Builds one of load/native's C programs with gcc (warnings are errors) into a temporary file and runs it.</summary>
internal static class NativeTool
{
    public static async Task<(int ExitCode, string Output, string Error)> BuildAndRunAsync(string tool, params string[] arguments)
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Perf.sln")))
        {
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("Perf.sln not found above the test binaries");
        }

        var binary = Path.Combine(Path.GetTempPath(), $"{tool}-{Guid.NewGuid():N}");
        try
        {
            var (gccExit, gccOutput, gccError) = await RunAsync("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", binary, Path.Combine(root, "load", "native", tool + ".c"));
            Assert.True(gccExit == 0, gccOutput + gccError);
            return await RunAsync(binary, arguments);
        }
        finally
        {
            File.Delete(binary);
        }
    }

    private static async Task<(int, string, string)> RunAsync(string file, params string[] arguments)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            throw new TimeoutException($"{file} did not exit within 90 s: {await stdout}{await stderr}");
        }

        return (process.ExitCode, await stdout, await stderr);
    }
}
