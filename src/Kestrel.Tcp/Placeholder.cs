namespace Perf.Kestrel.Tcp;
