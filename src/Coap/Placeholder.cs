namespace Perf.Coap;
