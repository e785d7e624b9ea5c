/* admin.c — see admin.h. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "admin.h"
#include "store.h"

struct subcommand {
	const char *name;
	int (*run)(const char *data_dir, int argc, char **argv);
	const char *usage;
};

/* parleyd backup [--data-dir DIR] DEST */
static int
run_backup(const char *data_dir, int argc, char **argv)
{
	char detail[600];
	store_err err;

	if (argc != 1) {
		fprintf(stderr, "usage: parleyd backup [--data-dir DIR] DEST\n");
		return 2;
	}
	err = store_backup(data_dir, argv[0], detail, sizeof(detail));
	if (err != STORE_OK) {
		fprintf(stderr, "parleyd backup: %s (%s)\n", store_strerror(err), detail);
		return 1;
	}
	printf("backed up %s to %s\n", data_dir, argv[0]);
	return 0;
}

/* parleyd restore BACKUP [--data-dir DIR] */
static int
run_restore(const char *data_dir, int argc, char **argv)
{
	char detail[600];
	store_err err;

	if (argc != 1) {
		fprintf(stderr, "usage: parleyd restore BACKUP [--data-dir DIR]\n");
		return 2;
	}
	err = store_restore(argv[0], data_dir, detail, sizeof(detail));
	if (err != STORE_OK) {
		fprintf(stderr, "parleyd restore: %s (%s)\n", store_strerror(err), detail);
		return 1;
	}
	printf("restored %s into %s\n", argv[0], data_dir);
	return 0;
}

static const struct subcommand subcommands[] = {
	{"backup", run_backup,
	 "parleyd backup [--data-dir DIR] DEST     consistent, compacted copy of a store,\n"
	 "                                         running or not, into DEST (new or empty)\n"},
	{"restore", run_restore,
	 "parleyd restore BACKUP [--data-dir DIR]  a backup into DIR (new or empty)\n"},
};
#define NSUBCOMMANDS (sizeof(subcommands) / sizeof(subcommands[0]))

void
parleyd_admin_usage(FILE *out)
{
	for (size_t i = 0; i < NSUBCOMMANDS; i++)
		fputs(subcommands[i].usage, out);
}

int
parleyd_admin(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"data-dir", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const struct subcommand *sc = NULL;
	const char *data_dir = getenv("PARLEY_DATA_DIR");
	int opt;

	for (size_t i = 0; i < NSUBCOMMANDS; i++)
		if (strcmp(argv[0], subcommands[i].name) == 0)
			sc = &subcommands[i];
	if (sc == NULL)
		return -1;
	if (data_dir == NULL || data_dir[0] == '\0')
		data_dir = "./data";
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd': data_dir = optarg; break;
		case 'h': fputs(sc->usage, stdout); return 0;
		default: fputs(sc->usage, stderr); return 2;
		}
	}
	/* The copies hold password hashes and the token key: nothing made
	 * here is for other users, whatever the caller's umask. */
	umask(077);
	return sc->run(data_dir, argc - optind, argv + optind);
}
