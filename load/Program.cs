using Perf.Load;

// dotnet run -c Release --project load -- <scenario> [options]
// Exit codes: 0 ok, 1 a --max-error-rate / --min-rate / --max-p99 threshold violated (or nothing connected,
// or provisioning failed), 2 bad arguments.
using var cancellation = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancellation.Cancel();
};

return await LoadCli.RunAsync(args, cancellation.Token);
