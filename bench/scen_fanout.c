#include "bench.h"
int scen_fanout(const bench_opts *o) { return 1; }
