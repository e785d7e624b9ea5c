/*
 * version.h — which Parley this is: the CMake project version and the git
 * commit the build was made from ("unknown" when built from a tree without
 * .git; "-dirty" appended when tracked files had changes). Generated at build
 * time by cmake/version.cmake; constant, so safe from any thread.
 */
#ifndef PARLEY_VERSION_H
#define PARLEY_VERSION_H

extern const char parley_version[]; /* e.g. "0.1.0" */
extern const char parley_commit[];  /* e.g. "1cdbc0c4a1b2" or "unknown" */

#endif
