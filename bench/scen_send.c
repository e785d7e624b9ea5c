#include "bench.h"
int scen_send(const bench_opts *o) { return 1; }
