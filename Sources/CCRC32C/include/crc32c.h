#ifndef SLUICE_CRC32C_H
#define SLUICE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Whether this CPU computes CRC-32C in hardware (x86-64 SSE 4.2, or the ARMv8 CRC extension).
int sluice_crc32c_hardware_available(void);

/// Continues the CRC-32C `crc` (0 to start) over `count` bytes at `bytes`, in hardware. Only call it when
/// `sluice_crc32c_hardware_available()` returned 1.
uint32_t sluice_crc32c_hardware_update(uint32_t crc, const void *bytes, size_t count);

#endif
