/*
 * admin.h — parleyd's subcommands for operators, run instead of the daemon
 * (`parleyd backup ...`, `parleyd restore ...`): one table, so later ones
 * add a row. Single-threaded; writes to stdout/stderr and returns an exit
 * status, like main.
 */
#ifndef PARLEY_ADMIN_H
#define PARLEY_ADMIN_H

#include <stdio.h>

/* argv[0] is the subcommand's name. Returns its exit status (0 ok, 1
 * failed, 2 bad usage), or -1 when argv[0] names no subcommand. */
int parleyd_admin(int argc, char **argv);

/* Prints the subcommands' usage lines. */
void parleyd_admin_usage(FILE *out);

#endif
