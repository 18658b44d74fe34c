/* Instruction counter for the unicorn emulator (wp.mcu): a basic-block hook that adds the number of
 * Thumb instructions in the block (a 32-bit Thumb-2 instruction starts with 0b11101, 0b11110 or 0b11111).
 * Instructions of an IT block whose condition fails are counted: they are issued (and take a cycle on
 * a Cortex-M3). */
#include <stdint.h>

static uint64_t n_insn, n_flash_reads;
static const uint8_t *code;
static uint64_t code_base, code_len;

void wp_counter_set_code(const uint8_t *c, uint64_t base, uint64_t len)
{
    code = c;
    code_base = base;
    code_len = len;
    n_insn = 0;
    n_flash_reads = 0;
}

uint64_t wp_counter_value(void) { return n_insn; }
uint64_t wp_counter_flash_reads(void) { return n_flash_reads; }

/* Memory-read hook over the flash region: data loads from flash (tables, indices, weights). */
void wp_counter_read(void *uc, int type, uint64_t addr, int size, int64_t value, void *user)
{
    (void)uc; (void)type; (void)addr; (void)size; (void)value; (void)user;
    n_flash_reads++;
}

void wp_counter_block(void *uc, uint64_t addr, uint32_t size, void *user)
{
    (void)uc;
    (void)user;
    uint64_t p = addr - code_base, end = p + size;
    if (end > code_len)
        end = code_len;
    while (p < end) {
        const unsigned hw = code[p] | (unsigned)code[p + 1] << 8;
        p += (hw >> 11) >= 0x1d ? 4 : 2;
        n_insn++;
    }
}
