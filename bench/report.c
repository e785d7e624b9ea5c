/* report.c — result tables on stdout and JSON files with the machine's facts. */
#define _GNU_SOURCE
#include "bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static const char *fs_name(const char *dir, char *buf, size_t len);

void
rep_begin(breport *r, const char *scenario, const bench_opts *o)
{
	memset(r, 0, sizeof(*r));
	r->scenario = scenario;
	r->o = o;
	r->t0_ns = bench_now_ns();
	snprintf(r->fs_dir, sizeof(r->fs_dir), "%s", o->tmproot);
	fs_name(r->fs_dir, r->fs, sizeof(r->fs));
	if (getloadavg(r->load_start, 3) != 3)
		memset(r->load_start, 0, sizeof(r->load_start));
	printf("\n== %s%s ==\n", scenario, o->quick ? " (quick)" : "");
	fflush(stdout);
}

brow *
rep_row(breport *r, const char *name, const char *metric, const char *unit)
{
	brow *row;

	if (r->nrows == REPORT_ROWS) {
		static brow spill;	/* never reported; keeps callers simple */

		if (!r->spilled)
			fprintf(stderr, "parley-bench: more than %d result rows: '%s: %s' and "
					"later rows are left out of the results\n",
				REPORT_ROWS, name, metric);
		r->spilled = true;
		memset(&spill, 0, sizeof(spill));
		return &spill;
	}
	row = &r->rows[r->nrows++];
	snprintf(row->name, sizeof(row->name), "%s", name);
	snprintf(row->metric, sizeof(row->metric), "%s", metric);
	snprintf(row->unit, sizeof(row->unit), "%s", unit);
	return row;
}

brow *
rep_row_vs(breport *r, const char *name, const char *metric, const char *unit,
	   const char *base)
{
	brow *row = rep_row(r, name, metric, unit);

	row->has_base = true;
	snprintf(row->base, sizeof(row->base), "%s", base);
	return row;
}

void
rep_note(breport *r, const char *fmt, ...)
{
	va_list ap;

	if (r->nnotes == REPORT_NOTES)
		return;
	va_start(ap, fmt);
	vsnprintf(r->notes[r->nnotes], sizeof(r->notes[0]), fmt, ap);
	va_end(ap);
	printf("note: %s\n", r->notes[r->nnotes++]);
	fflush(stdout);
}

void
rep_fact(breport *r, const char *key, double val)
{
	if (r->nfacts == REPORT_FACTS)
		return;
	snprintf(r->facts[r->nfacts].key, sizeof(r->facts[0].key), "%s", key);
	r->facts[r->nfacts++].val = val;
}

void
rep_fail(breport *r, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "FAILED [%s]: %s\n", r->scenario, msg);
	fflush(stderr);
	r->failures++;
	rep_note(r, "FAILED: %s", msg);
}

void
rep_set_fs(breport *r, const char *dir)
{
	snprintf(r->fs_dir, sizeof(r->fs_dir), "%s", dir);
	fs_name(r->fs_dir, r->fs, sizeof(r->fs));
}

/* ---- machine facts ------------------------------------------------------------ */

static void
cpu_model(char *out, size_t len)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(out, len, "unknown");
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *colon = strchr(line, ':');

		if (strncmp(line, "model name", 10) != 0 || colon == NULL)
			continue;
		colon += 1 + strspn(colon + 1, " \t");
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(out, len, "%s", colon);
		break;
	}
	fclose(f);
}

static const char *
fs_name(const char *dir, char *buf, size_t len)
{
	static const struct {
		unsigned long magic;
		const char *name;
	} names[] = {
		{0xEF53, "ext2/ext3/ext4"}, {0x01021994, "tmpfs"}, {0x58465342, "xfs"},
		{0x9123683E, "btrfs"},	    {0x794C7630, "overlayfs"}, {0x2FC12FC1, "zfs"},
		{0xF2F52010, "f2fs"},	    {0x6969, "nfs"},	 {0x65735546, "fuse"},
		{0x858458F6, "ramfs"},	    {0x01021997, "9p"},	 {0x62656572, "sysfs"},
	};
	struct statfs sf;

	if (statfs(dir, &sf) != 0) {
		snprintf(buf, len, "unknown");
		return buf;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if ((unsigned long)sf.f_type == names[i].magic) {
			snprintf(buf, len, "%s", names[i].name);
			return buf;
		}
	snprintf(buf, len, "0x%lx", (unsigned long)sf.f_type);
	return buf;
}

/* ---- the table ---------------------------------------------------------------- */

static void
fmt_num(char *buf, size_t len, double v)
{
	double a = v < 0 ? -v : v;

	if (a >= 100 || a == 0)
		snprintf(buf, len, "%.0f", v);
	else if (a >= 10)
		snprintf(buf, len, "%.1f", v);
	else
		snprintf(buf, len, "%.2f", v);
}

static void
fmt_stat(char *buf, size_t len, const rstat *s)
{
	char m[24], lo[24], hi[24];

	if (s->n == 0) {
		snprintf(buf, len, "-");
		return;
	}
	fmt_num(m, sizeof(m), rstat_median(s));
	fmt_num(lo, sizeof(lo), rstat_min(s));
	fmt_num(hi, sizeof(hi), rstat_max(s));
	if (s->n == 1)
		snprintf(buf, len, "%s", m);
	else
		snprintf(buf, len, "%s (%s-%s)", m, lo, hi);
}

static void
print_table(const breport *r)
{
	printf("%-30s %-22s %-26s %-34s %s\n", "case", "metric", "parley median (min-max)",
	       "baseline median (min-max)", "parley/base");
	for (int i = 0; i < r->nrows; i++) {
		const brow *row = &r->rows[i];
		char metric[80], p[96], b[160], bs[96], ratio[32] = "";

		snprintf(metric, sizeof(metric), "%s [%s]", row->metric, row->unit);
		fmt_stat(p, sizeof(p), &row->parley);
		if (row->has_base && row->b.n > 0) {
			fmt_stat(bs, sizeof(bs), &row->b);
			snprintf(b, sizeof(b), "%s %s", bs, row->base);
			if (rstat_median(&row->b) != 0 && row->parley.n > 0 && !row->no_ratio)
				snprintf(ratio, sizeof(ratio), "%.2f",
					 rstat_median(&row->parley) / rstat_median(&row->b));
		} else {
			snprintf(b, sizeof(b), "%s", row->has_base ? row->base : "");
		}
		printf("%-30s %-22s %-26s %-34s %s\n", row->name, metric, p, b, ratio);
	}
	fflush(stdout);
}

/* ---- JSON --------------------------------------------------------------------- */

static void
json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void
json_stat(FILE *f, const rstat *s)
{
	fprintf(f, "{\"median\": %.6g, \"min\": %.6g, \"max\": %.6g, \"reps\": [", rstat_median(s),
		rstat_min(s), rstat_max(s));
	for (int i = 0; i < s->n; i++)
		fprintf(f, "%s%.6g", i ? ", " : "", s->v[i]);
	fprintf(f, "]}");
}

static bool
write_json(const breport *r, const char *path)
{
	char cpu[256], ts[64];
	double load_end[3] = {0};
	struct utsname u;
	time_t now = time(NULL);
	FILE *f = fopen(path, "w");

	if (f == NULL)
		return false;
	cpu_model(cpu, sizeof(cpu));
	uname(&u);
	if (getloadavg(load_end, 3) != 3)
		memset(load_end, 0, sizeof(load_end));
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));

	fprintf(f, "{\n  \"scenario\": ");
	json_str(f, r->scenario);
	fprintf(f, ",\n  \"quick\": %s,\n  \"time\": \"%s\",\n  \"repetitions\": %d,\n",
		r->o->quick ? "true" : "false", ts, r->o->reps);
	fprintf(f, "  \"duration_s\": %.1f,\n  \"parleyd\": ",
		(double)(bench_now_ns() - r->t0_ns) / 1e9);
	json_str(f, r->o->parleyd);
	fprintf(f, ",\n  \"machine\": {\n    \"cores\": %ld,\n    \"cpu_model\": ",
		sysconf(_SC_NPROCESSORS_ONLN));
	json_str(f, cpu);
	fprintf(f, ",\n    \"kernel\": ");
	{
		char k[600];
		snprintf(k, sizeof(k), "%s %s %s %s", u.sysname, u.release, u.version, u.machine);
		json_str(f, k);
	}
	fprintf(f, ",\n    \"filesystem\": ");
	json_str(f, r->fs);
	fprintf(f, ",\n    \"filesystem_of\": ");
	json_str(f, r->fs_dir);
	fprintf(f, ",\n    \"mem_total_kb\": %ld,\n",
		sysconf(_SC_PHYS_PAGES) * (sysconf(_SC_PAGESIZE) / 1024));
	fprintf(f, "    \"load_average_start\": [%.2f, %.2f, %.2f],\n", r->load_start[0],
		r->load_start[1], r->load_start[2]);
	fprintf(f, "    \"load_average_end\": [%.2f, %.2f, %.2f]\n  },\n", load_end[0],
		load_end[1], load_end[2]);

	fprintf(f, "  \"rows\": [\n");
	for (int i = 0; i < r->nrows; i++) {
		const brow *row = &r->rows[i];

		fprintf(f, "    {\"case\": ");
		json_str(f, row->name);
		fprintf(f, ", \"metric\": ");
		json_str(f, row->metric);
		fprintf(f, ", \"unit\": ");
		json_str(f, row->unit);
		fprintf(f, ",\n     \"parley\": ");
		json_stat(f, &row->parley);
		if (row->has_base) {
			fprintf(f, ",\n     \"baseline_name\": ");
			json_str(f, row->base);
			if (row->b.n > 0) {
				fprintf(f, ",\n     \"baseline\": ");
				json_stat(f, &row->b);
				if (rstat_median(&row->b) != 0 && !row->no_ratio)
					fprintf(f, ",\n     \"ratio\": %.4g",
						rstat_median(&row->parley) / rstat_median(&row->b));
			}
		}
		fprintf(f, "}%s\n", i + 1 < r->nrows ? "," : "");
	}
	fprintf(f, "  ],\n  \"facts\": {");
	for (int i = 0; i < r->nfacts; i++) {
		fprintf(f, "%s\n    ", i ? "," : "");
		json_str(f, r->facts[i].key);
		fprintf(f, ": %.6g", r->facts[i].val);
	}
	fprintf(f, "\n  },\n  \"notes\": [");
	for (int i = 0; i < r->nnotes; i++) {
		fprintf(f, "%s\n    ", i ? "," : "");
		json_str(f, r->notes[i]);
	}
	fprintf(f, "\n  ],\n  \"failures\": %d\n}\n", r->failures);
	return fclose(f) == 0;
}

int
rep_finish(breport *r)
{
	char path[600], ts[32];
	time_t now = time(NULL);

	printf("\n");
	print_table(r);
	printf("(%d repetitions each; filesystem of %s: %s)\n", r->o->reps, r->fs_dir, r->fs);
	strftime(ts, sizeof(ts), "%Y%m%d-%H%M%S", localtime(&now));
	if (!bench_mkdirs(r->o->outdir)) {
		fprintf(stderr, "parley-bench: cannot create %s\n", r->o->outdir);
		return r->failures + 1;
	}
	snprintf(path, sizeof(path), "%s/%s-%s.json", r->o->outdir, r->scenario, ts);
	if (!write_json(r, path)) {
		fprintf(stderr, "parley-bench: cannot write %s\n", path);
		return r->failures + 1;
	}
	printf("results: %s\n", path);
	if (r->failures)
		printf("%s: %d check(s) FAILED\n", r->scenario, r->failures);
	fflush(stdout);
	return r->failures;
}
