using System.Diagnostics;
using System.Net.Sockets;

namespace Perf.Load.Tests;

/// <summary>Builds one of load/native's C programs with gcc (warnings are errors) into a temporary file and runs it.</summary>
internal static class NativeTool
{
    public static async Task<(int ExitCode, string Output, string Error)> BuildAndRunAsync(string tool, params string[] arguments)
    {
        var binary = await BuildAsync(tool);
        try
        {
            return await RunAsync(binary, arguments);
        }
        finally
        {
            File.Delete(binary);
        }
    }

    /// <summary>Builds load/native/<paramref name="tool"/>.c into a temporary file (the caller deletes it) and returns its path.</summary>
    public static async Task<string> BuildAsync(string tool)
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Perf.sln")))
        {
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("Perf.sln not found above the test binaries");
        }

        var binary = Path.Combine(Path.GetTempPath(), $"{tool}-{Guid.NewGuid():N}");
        var (gccExit, gccOutput, gccError) = await RunAsync("gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", binary, Path.Combine(root, "load", "native", tool + ".c"));
        Assert.True(gccExit == 0, gccOutput + gccError);
        return binary;
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

    /// <summary>The remaining-length body of one MQTT packet read by a test stub (fixed header skipped).</summary>
    public static async Task<byte[]> ReadPacketAsync(Socket socket)
    {
        var one = new byte[1];
        await ReadExactlyAsync(socket, one);
        int remaining = 0, shift = 0;
        do
        {
            await ReadExactlyAsync(socket, one);
            remaining |= (one[0] & 0x7F) << shift;
            shift += 7;
        }
        while ((one[0] & 0x80) != 0);

        var body = new byte[remaining];
        await ReadExactlyAsync(socket, body);
        return body;
    }

    public static async Task ReadExactlyAsync(Socket socket, byte[] buffer)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None);
            if (n == 0)
            {
                throw new IOException("closed");
            }

            read += n;
        }
    }
}
