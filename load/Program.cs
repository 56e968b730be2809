using Perf.Load;

// dotnet run -c Release --project load -- <scenario> [options]
// Exit codes: 0 ok, 1 a --max-error-rate / --min-rate / --max-p99 threshold violated (or nothing connected,
// or provisioning failed), 2 bad arguments.
// mqtt-connect: the lanes do a few microseconds of work per socket completion, so run it on the socket event
// thread instead of a hop to the thread pool (read once, when the first socket is created): about 25% less
// client CPU per connect on this machine (docs/PERFORMANCE.md, "Connect rate"). Set the variable to 0 to compare.
if (args is ["mqtt-connect", ..] && Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
{
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
}

using var cancellation = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancellation.Cancel();
};

return await LoadCli.RunAsync(args, cancellation.Token);
