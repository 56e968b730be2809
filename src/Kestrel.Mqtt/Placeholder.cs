namespace Perf.Kestrel.Mqtt;
