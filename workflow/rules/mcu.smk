# The C runtime on an emulated Cortex-M3 (issue 18; README "Microcontroller runtime"). Not in the default
# target: `snakemake --cores 1 all_mcu`. Without the toolchain each rule stops with one line naming it.

MCU = config["mcu"]
MCU_CODE = code("wp/intnet.py", "wp/mcu.py", "wp/mcu_bench.py", "wp/lutnet.py", "wp/lut.py", "wp/quant.py", "wp/pool.py",
                "wp/paper.py", "wp/models", "wp/stages/mcu.py", "wp/runtime_c/wp_rt.c", "wp/runtime_c/wp_rt.h",
                "wp/runtime_c/m3_main.c", "wp/runtime_c/m3.ld", "wp/runtime_c/uc_count.c")


rule mcu_table7:
    output:
        csv=report(f"{TABLES}/table7.csv", category="Microcontroller"),
        md=f"{TABLES}/table7.md",
    input:
        table6=[f"{TABLES}/table6.csv"] if MCU["min_bits"] == "table6" else [],
        code=MCU_CODE,
    params:
        networks=" ".join(MCU["networks"]),
        pools=" ".join(str(k) for k in MCU["pools"]),
        table6=lambda wc, input: f"--table6 {input.table6[0]}" if input.table6 else "",
        build=f"{RESULTS}/mcu/table7",
    log:
        f"{LOGS}/mcu/table7.log",
    benchmark:
        f"{BENCH}/mcu/table7.tsv"
    shell:
        "{PY} mcu_table7 --networks {params.networks} --pools {params.pools} --lut-bits {MCU[lut_bits]} "
        "--variant {MCU[variant]} --min-bits {MCU[min_bits]} {params.table6} --cpi {MCU[cpi]} "
        "--wait-states {MCU[wait_states]} --seed {config[seed]} --build {params.build:q} --out {output.csv:q} "
        "--md {output.md:q} > {log:q} 2>&1"


rule mcu_figure7:
    output:
        csv=f"{TABLES}/figure7.csv",
        png=report(f"{TABLES}/plots/figure7.png", category="Microcontroller"),
    input:
        code=MCU_CODE,
    params:
        filters=" ".join(str(f) for f in MCU["figure7_filters"]),
        build=f"{RESULTS}/mcu/figure7",
    log:
        f"{LOGS}/mcu/figure7.log",
    benchmark:
        f"{BENCH}/mcu/figure7.tsv"
    shell:
        "{PY} mcu_figure7 --filters {params.filters} --size {MCU[layer_size]} --k {MCU[layer_k]} --cpi {MCU[cpi]} "
        "--wait-states {MCU[wait_states]} --seed {config[seed]} --build {params.build:q} --out {output.csv:q} "
        "--png {output.png:q} > {log:q} 2>&1"


rule mcu_figure8:
    output:
        csv=f"{TABLES}/figure8.csv",
        png=report(f"{TABLES}/plots/figure8.png", category="Microcontroller"),
    input:
        code=MCU_CODE,
    params:
        bits=" ".join(str(b) for b in MCU["figure8_bits"]),
        build=f"{RESULTS}/mcu/figure8",
    log:
        f"{LOGS}/mcu/figure8.log",
    benchmark:
        f"{BENCH}/mcu/figure8.tsv"
    shell:
        "{PY} mcu_figure8 --channels {MCU[figure8_channels]} --bits {params.bits} --size {MCU[layer_size]} "
        "--k {MCU[layer_k]} --cpi {MCU[cpi]} --wait-states {MCU[wait_states]} --seed {config[seed]} "
        "--build {params.build:q} --out {output.csv:q} --png {output.png:q} > {log:q} 2>&1"
