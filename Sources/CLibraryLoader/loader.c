#include "CLibraryLoader.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int sluice_library_load(const char *library, const char *const *names, void **const *pointers, int count,
                        int *loaded, int check_only, char *error, size_t error_size) {
    pthread_mutex_lock(&lock);
    if (*loaded && !check_only) { pthread_mutex_unlock(&lock); return 0; }
    void *handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(error, error_size, "%s", dlerror());
        pthread_mutex_unlock(&lock);
        return -1;
    }
    void *found[count];
    for (int i = 0; i < count; i++) {
        if (!(found[i] = dlsym(handle, names[i]))) {
            snprintf(error, error_size, "%s has no function %s", library, names[i]);
            dlclose(handle);
            pthread_mutex_unlock(&lock);
            return -1;
        }
    }
    if (*loaded) {  // checked only: the functions in use stay
        dlclose(handle);
    } else {
        for (int i = 0; i < count; i++) *pointers[i] = found[i];
        *loaded = 1;
    }
    pthread_mutex_unlock(&lock);
    return 0;
}
