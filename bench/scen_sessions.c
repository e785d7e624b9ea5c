#include "bench.h"
int scen_sessions(const bench_opts *o) { return 1; }
