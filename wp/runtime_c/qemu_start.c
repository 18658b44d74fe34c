/* Reset for QEMU's mps2-an385 (Cortex-M3), used only by wp.mcu's QEMU cross-check of the instruction counts:
 * a two-word vector table (initial SP at the top of the board's 4 MB SRAM, reset handler), wp_entry on a
 * zero image, then semihosting SYS_EXIT so that QEMU stops. */
#include <stdint.h>

extern void wp_entry(void);
void wp_qemu_reset(void);

__attribute__((section(".vectors"), used)) const uint32_t wp_vectors[2] = {0x20400000u, (uint32_t)wp_qemu_reset};

void wp_qemu_reset(void)
{
    wp_entry();
    register uint32_t r0 __asm__("r0") = 0x18, r1 __asm__("r1") = 0x20026; /* SYS_EXIT, ADP_Stopped_ApplicationExit */
    __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}
