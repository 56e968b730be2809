using Perf.Api.Hosting;

await using var host = await PerfHost.CreateAsync(args);
await host.RunAsync();
