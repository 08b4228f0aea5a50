// librdkafka's API, loaded at run time: only the cluster backend (log.backend=kafka) uses it, so the agent
// maps librdkafka, libssl and libcrypto (~2 MiB resident, ~2.5 ms of symbol lookups at every start) only then.
// The declarations are librdkafka's own header; loader.c defines each function the cluster backend calls as a
// jump through a pointer that sluice_rdkafka_load fills in.
#pragma once
#include <stddef.h>
#include <librdkafka/rdkafka.h>

/// Opens librdkafka (`path`, or "librdkafka.so.1" when NULL) and resolves every function the cluster backend
/// calls. Returns 0, or -1 with the reason in `error`. Safe to call more than once and from several threads;
/// after the first success a NULL path returns 0 at once (and an explicit one is only checked: opened and
/// searched for every function, then closed).
int sluice_rdkafka_load(const char *path, char *error, size_t error_size);
