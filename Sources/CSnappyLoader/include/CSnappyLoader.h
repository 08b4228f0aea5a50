// snappy's C API, loaded at run time: snappy is C++, and linking it maps the C++ runtime (libstdc++, ~1.5 MiB
// resident and ~1.5 ms of relocations at every start) into every agent, whether or not a topic uses snappy. The
// declarations are snappy's own header; loader.c defines each function Sluice calls as a jump through a pointer
// that sluice_snappy_load fills in.
#pragma once
#include <stddef.h>
#include <snappy-c.h>

/// Opens libsnappy ("libsnappy.so.1") and resolves the functions Sluice calls. Returns 0, or -1 with the reason in
/// `error`. Safe to call more than once and from several threads; after the first success it returns 0 at once.
int sluice_snappy_load(char *error, size_t error_size);
