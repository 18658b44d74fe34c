/* Cortex-M3 image for the emulator (wp.mcu): no startup code and no I/O. The emulator writes the image into
 * wp_image, sets SP and LR (= wp_halt) and starts at wp_entry; it counts the instructions executed and
 * reads the count at every call of wp_mark (after each op). */
#include "wp_rt.h"
#include WP_NET_HEADER

static uint8_t arena[WP_NET_ARENA_BYTES + 8] __attribute__((aligned(8)));
float wp_image[WP_NET_INPUT_SIZE];
int32_t wp_n_ops = WP_NET_N_OPS;
int32_t wp_output_off = WP_NET_OUTPUT_OFF;
uint8_t *wp_arena = arena;

void wp_entry(void)
{
    wp_net net = WP_NET_INIT(arena);
    wp_run(&net, wp_image);
}

__attribute__((naked, noreturn)) void wp_halt(void)
{
    __asm__ volatile("1: b 1b");
}
