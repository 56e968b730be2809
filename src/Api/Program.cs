using Perf.Api.Hosting;

return await PerfHost.RunProcessAsync(args);
