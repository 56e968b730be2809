using Perf.Api.Hosting;

await using var host = PerfHost.Build(args);
await host.RunAsync();
