/*
 * store_int.h — the LMDB handles behind store_env and store_txn, for the
 * other files of storage/ only (wipe.c). Nothing outside storage/ sees
 * LMDB.
 */
#ifndef PARLEY_STORE_INT_H
#define PARLEY_STORE_INT_H

#include <lmdb.h>

#include "store.h"

MDB_env *store_env_mdb(store_env *env);
MDB_txn *store_txn_mdb(store_txn *txn);

#endif
