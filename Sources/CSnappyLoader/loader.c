// Trampolines for the snappy functions SluiceLog's codec calls (see CSnappyLoader.h and CLibraryLoader.h). A
// function added to the codec must be added to SNAPPY_FUNCTIONS: the link fails with an undefined symbol until it is.
#include "CSnappyLoader.h"
#include "CLibraryLoader.h"

#define SNAPPY_FUNCTIONS(X) \
    X(snappy_compress) \
    X(snappy_max_compressed_length) \
    X(snappy_uncompress) \
    X(snappy_uncompressed_length) \

#define POINTER(name) __attribute__((visibility("hidden"))) void *sluice_snappy_##name;
SNAPPY_FUNCTIONS(POINTER)
#define TRAMPOLINE(name) SLUICE_TRAMPOLINE(sluice_snappy_, name)
SNAPPY_FUNCTIONS(TRAMPOLINE)

#define NAME(name) #name,
static const char *const names[] = { SNAPPY_FUNCTIONS(NAME) };
#define ADDRESS(name) &sluice_snappy_##name,
static void **const pointers[] = { SNAPPY_FUNCTIONS(ADDRESS) };
static int loaded = 0;

int sluice_snappy_load(char *error, size_t error_size) {
    return sluice_library_load("libsnappy.so.1", names, pointers, sizeof(names) / sizeof(names[0]), &loaded, 0,
                               error, error_size);
}
