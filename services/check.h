/*
 * check.h — `parleyd check --data-dir DIR`: walks every table of a data
 * directory and reports what is damaged, without changing anything.
 *
 * Each table is walked in a child process of its own, on an environment
 * opened read-only (a running daemon may keep writing): LMDB trusts its
 * pages, so a damaged page can crash the walk; a crash is then reported as
 * damage of that table and the other tables are still checked. Records of
 * known tables are checked as the services read them (decode, UTF-8,
 * lengths, the seq and room of their key, gap-free timelines).
 *
 * Exit status: 0 nothing damaged, 1 something damaged or unreadable,
 * 2 usage.
 */
#ifndef PARLEY_CHECK_H
#define PARLEY_CHECK_H

/* argv[0] is "check". Prints the report on stdout. */
int parley_check_main(int argc, char **argv);

#endif
