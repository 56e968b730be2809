using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Perf.Load.Tests;

/// <summary>
/// load/native/durable-sink.c, the one-thread durable floor: a PUBACK only once its PUBLISH is in the file, every
/// answer in order, a malformed packet closes only its own connection, and on SIGTERM it reports and deletes the file.
/// </summary>
public sealed partial class NativeDurableSinkTests : IDisposable
{
    private static readonly byte[] Connect = [0x10, 0x0C, 0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x00];
    private readonly string _file = Path.Combine(Path.GetTempPath(), $"durable-sink-{Guid.NewGuid():N}.bin");

    public void Dispose() => File.Delete(_file);

    [Fact]
    public async Task PubAcksFollowTheWrite_InOrder_BadInputClosesOnlyItsConnection_AndSigtermReportsAndDeletesTheFile()
    {
        var binary = await NativeTool.BuildAsync("durable-sink");
        try
        {
            var port = FreePort();
            var start = new ProcessStartInfo(binary) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var argument in new[] { port.ToString(CultureInfo.InvariantCulture), _file, "60" })
            {
                start.ArgumentList.Add(argument);
            }

            using var process = Process.Start(start)!;
            try
            {
                Assert.Equal($"listening on 127.0.0.1:{port}", await process.StandardOutput.ReadLineAsync());
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync(IPAddress.Loopback, port);
                await socket.SendAsync(Connect);
                Assert.Equal([0x20, 0x02, 0x00, 0x00], await ReadAsync(socket, 4));

                var first = Publish(0x0102, "v1/devices/me/telemetry", """{"t":1}""");
                await socket.SendAsync(first);
                Assert.Equal([0x40, 0x02, 0x01, 0x02], await ReadAsync(socket, 4));
                // Sent after the write-through write of its round: the PUBLISH is in the file now.
                Assert.True((await File.ReadAllBytesAsync(_file)).AsSpan().IndexOf(first) >= 0);

                var many = Enumerable.Range(1, 500).SelectMany(i => Publish((ushort)i, "t", $"{{\"n\":{i}}}")).ToArray();
                await socket.SendAsync(many);
                var answers = await ReadAsync(socket, 4 * 500);
                for (var i = 1; i <= 500; i++)
                {
                    Assert.Equal([0x40, 0x02, (byte)(i >> 8), (byte)i], answers.AsSpan(4 * (i - 1), 4).ToArray());
                }

                // A remaining length of more than 4 bytes closes that connection; the first one still works.
                using (var bad = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
                {
                    await bad.ConnectAsync(IPAddress.Loopback, port);
                    await bad.SendAsync(new byte[] { 0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x01 });
                    using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                    Assert.Equal(0, await bad.ReceiveAsync(new byte[4], SocketFlags.None, deadline.Token));
                }

                await socket.SendAsync(Publish(7, "t", "{}"));
                Assert.Equal([0x40, 0x02, 0x00, 0x07], await ReadAsync(socket, 4));

                Assert.Equal(0, Kill(process.Id, 15)); // SIGTERM
                using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await process.WaitForExitAsync(exit.Token);
                var output = await process.StandardOutput.ReadToEndAsync();
                Assert.True(process.ExitCode == 0, output + await process.StandardError.ReadToEndAsync());
                var report = Report().Match(output);
                Assert.True(report.Success, output);
                Assert.Equal("502", report.Groups["publishes"].Value);
                var bytes = long.Parse(report.Groups["bytes"].Value, CultureInfo.InvariantCulture);
                Assert.True(bytes >= Connect.Length + first.Length + many.Length, output);
                Assert.False(File.Exists(_file));
            }
            finally
            {
                if (!process.HasExited)
                {
                    process.Kill();
                }
            }
        }
        finally
        {
            File.Delete(binary);
        }
    }

    [Fact]
    public async Task BadArguments_AreAUsageError_AndAnExistingFileIsNotTouched()
    {
        var (exit, _, error) = await NativeTool.BuildAndRunAsync("durable-sink", "0", _file, "1");
        Assert.Equal(2, exit);
        Assert.Contains("usage:", error, StringComparison.Ordinal);

        await File.WriteAllTextAsync(_file, "kept");
        (exit, _, _) = await NativeTool.BuildAndRunAsync("durable-sink", FreePort().ToString(CultureInfo.InvariantCulture), _file, "1");
        Assert.Equal(1, exit);
        Assert.Equal("kept", await File.ReadAllTextAsync(_file));
    }

    private static byte[] Publish(ushort packetId, string topic, string payload)
    {
        var remaining = 2 + topic.Length + 2 + payload.Length;
        return [0x32, (byte)remaining, 0, (byte)topic.Length, .. topic.Select(c => (byte)c), (byte)(packetId >> 8), (byte)packetId, .. payload.Select(c => (byte)c)];
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static async Task<byte[]> ReadAsync(Socket socket, int length)
    {
        var buffer = new byte[length];
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        for (var read = 0; read < length;)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(read), SocketFlags.None, deadline.Token);
            Assert.True(n > 0, $"closed after {read} of {length} bytes");
            read += n;
        }

        return buffer;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    [GeneratedRegex(@"^rounds \d+ writes \d+ bytes (?<bytes>\d+) publishes (?<publishes>\d+): write ms p50 [\d.]+ p90 [\d.]+ p99 [\d.]+ p99\.9 [\d.]+ max [\d.]+$", RegexOptions.Multiline)]
    private static partial Regex Report();
}
