// Libraries opened at run time (dlopen) rather than linked: the C targets CRdKafkaLoader and CSnappyLoader define
// each function Sluice calls in such a library as a trampoline, one indirect jump through a pointer, so arguments
// and results pass untouched whatever the signature; sluice_library_load fills the pointers before first use.
// An agent that never uses the library never maps it (nor what it brings: libssl for librdkafka, the C++ runtime
// for snappy).
#pragma once
#include <stddef.h>

/// Opens `library` and resolves `count` functions by `names` into `pointers`. Returns 0, or -1 with the reason in
/// `error`. Safe from several threads and more than once: after the first success (`*loaded` set) it returns 0 at
/// once unless `check_only`, which opens the library, looks every function up and closes it again, leaving the
/// functions in use as they are.
int sluice_library_load(const char *library, const char *const *names, void **const *pointers, int count,
                        int *loaded, int check_only, char *error, size_t error_size);

// SLUICE_LIBRARY(FUNCTIONS), after `#define SLUICE_LIBRARY_PREFIX p_`: for each function the X-macro list
// FUNCTIONS(X) names, a hidden pointer `p_name` and the function `name` as a jump through it; and the tables
// sluice_library_load takes: library_names, library_pointers, SLUICE_LIBRARY_COUNT, library_loaded.
#define SLUICE_CAT_(a, b) a##b
#define SLUICE_CAT(a, b) SLUICE_CAT_(a, b)
#define SLUICE_STRING_(x) #x
#define SLUICE_STRING(x) SLUICE_STRING_(x)
#define SLUICE_POINTER_NAME(name) SLUICE_STRING(SLUICE_CAT(SLUICE_LIBRARY_PREFIX, name))
#if defined(__x86_64__)
#define SLUICE_TRAMPOLINE(name) \
    __asm__(".text\n.globl " #name "\n.type " #name ",@function\n.p2align 4\n" #name ":\n" \
            "    jmp *" SLUICE_POINTER_NAME(name) "(%rip)\n.size " #name ",.-" #name "\n");
#elif defined(__aarch64__)
#define SLUICE_TRAMPOLINE(name) \
    __asm__(".text\n.globl " #name "\n.type " #name ",%function\n.p2align 2\n" #name ":\n" \
            "    adrp x16, " SLUICE_POINTER_NAME(name) "\n    ldr x16, [x16, :lo12:" SLUICE_POINTER_NAME(name) "]\n" \
            "    br x16\n.size " #name ",.-" #name "\n");
#else
#error "CLibraryLoader has trampolines for x86_64 and aarch64 only"
#endif
#define SLUICE_POINTER(name) __attribute__((visibility("hidden"))) void *SLUICE_CAT(SLUICE_LIBRARY_PREFIX, name);
#define SLUICE_NAME(name) #name,
#define SLUICE_ADDRESS(name) &SLUICE_CAT(SLUICE_LIBRARY_PREFIX, name),
#define SLUICE_LIBRARY(FUNCTIONS) \
    FUNCTIONS(SLUICE_POINTER) \
    FUNCTIONS(SLUICE_TRAMPOLINE) \
    static const char *const library_names[] = { FUNCTIONS(SLUICE_NAME) }; \
    static void **const library_pointers[] = { FUNCTIONS(SLUICE_ADDRESS) }; \
    static int library_loaded = 0;
#define SLUICE_LIBRARY_COUNT ((int)(sizeof(library_names) / sizeof(library_names[0])))
