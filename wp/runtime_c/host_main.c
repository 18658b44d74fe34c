/* Host harness: runs a generated network (WP_NET_HEADER, the header of wp.intnet.c_header) on images
 * read from a file and writes every op's output tensor as int32 values (codes, not stored bytes).
 * usage: host_main images.f32 n_images outputs.i32 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wp_rt.h"
#include WP_NET_HEADER

static uint8_t arena[WP_NET_ARENA_BYTES + 8] __attribute__((aligned(8)));
static float image[WP_NET_INPUT_SIZE];

static long n_out(const wp_op *op) { return (long)op->out_h * op->out_w * op->out_c; }

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s images.f32 n_images outputs.i32\n", argv[0]);
        return 2;
    }
    FILE *fi = fopen(argv[1], "rb"), *fo = fopen(argv[3], "wb");
    if (!fi || !fo) {
        fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[3]);
        return 2;
    }
    const int n = atoi(argv[2]);
    wp_net net = WP_NET_INIT(arena);
    for (int im = 0; im < n; im++) {
        if (fread(image, sizeof(float), WP_NET_INPUT_SIZE, fi) != WP_NET_INPUT_SIZE) {
            fprintf(stderr, "%s: short read at image %d\n", argv[1], im);
            return 2;
        }
        for (int i = 0; i < net.n_ops; i++) {
            const wp_op *op = &net.ops[i];
            wp_run_op(&net, i, image);
            const int int32 = op->type == WP_SUMPOOL || ((op->type == WP_CONV8 || op->type == WP_DWCONV8 || op->type == WP_LUTCONV ||
                                                          op->type == WP_REQUANT) && op->out_kind == WP_INT32);
            for (long j = 0; j < n_out(op); j++) {
                int32_t v;
                if (int32)
                    memcpy(&v, arena + op->out + 4 * j, 4);
                else
                    v = (int32_t)(int8_t)arena[op->out + j] + op->out_zp;
                fwrite(&v, 4, 1, fo);
            }
        }
    }
    fclose(fi);
    fclose(fo);
    return 0;
}
