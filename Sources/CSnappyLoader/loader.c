// Trampolines for the snappy functions SluiceLog's codec calls (see CSnappyLoader.h and CLibraryLoader.h). A
// function added to the codec must be added to SNAPPY_FUNCTIONS: the link fails with an undefined symbol until it is.
#include "CSnappyLoader.h"
#include "CLibraryLoader.h"

#define SNAPPY_FUNCTIONS(X) \
    X(snappy_compress) \
    X(snappy_max_compressed_length) \
    X(snappy_uncompress) \
    X(snappy_uncompressed_length) \

#define SLUICE_LIBRARY_PREFIX sluice_snappy_
SLUICE_LIBRARY(SNAPPY_FUNCTIONS)

int sluice_snappy_load(char *error, size_t error_size) {
    return sluice_library_load("libsnappy.so.1", library_names, library_pointers, SLUICE_LIBRARY_COUNT, &library_loaded, 0,
                               error, error_size);
}
