# The C runtime on an emulated Cortex-M3 (issue 18; README "Microcontroller runtime"). Not in the default
# target: `snakemake --cores 1 all_mcu`. Without the toolchain each rule stops with one line naming it.

MCU = config["mcu"]


rule mcu_table7:
    input:
        table6=[f"{TABLES}/table6.csv"] if MCU["min_bits"] == "table6" else [],
        code=code("mcu_table7"),
    output:
        csv=report(f"{TABLES}/table7.csv", category="Microcontroller"),
        md=f"{TABLES}/table7.md",
    log:
        f"{LOGS}/mcu/table7.log",
    benchmark:
        f"{BENCH}/mcu/table7.tsv"
    params:
        networks=" ".join(MCU["networks"]),
        pools=" ".join(str(k) for k in MCU["pools"]),
        table6=lambda wc, input: f"--table6 {input.table6[0]}" if input.table6 else "",
        build=f"{RESULTS}/mcu/table7",
        mcu=MCU,
        seed=config["seed"],
    shell:
        "{PY} mcu_table7 --networks {params.networks} --pools {params.pools} --lut-bits {params.mcu[lut_bits]} "
        "--variant {params.mcu[variant]} --min-bits {params.mcu[min_bits]} {params.table6} --cpi {params.mcu[cpi]} "
        "--wait-states {params.mcu[wait_states]} --seed {params.seed} --build {params.build:q} --out {output.csv:q} "
        "--md {output.md:q} > {log:q} 2>&1"


rule mcu_figure7:
    input:
        code=code("mcu_figure7"),
    output:
        csv=f"{TABLES}/figure7.csv",
        png=report(f"{TABLES}/plots/figure7.png", category="Microcontroller"),
    log:
        f"{LOGS}/mcu/figure7.log",
    benchmark:
        f"{BENCH}/mcu/figure7.tsv"
    params:
        filters=" ".join(str(f) for f in MCU["figure7_filters"]),
        build=f"{RESULTS}/mcu/figure7",
        mcu=MCU,
        seed=config["seed"],
    shell:
        "{PY} mcu_figure7 --filters {params.filters} --size {params.mcu[layer_size]} --k {params.mcu[layer_k]} --cpi {params.mcu[cpi]} "
        "--wait-states {params.mcu[wait_states]} --seed {params.seed} --build {params.build:q} --out {output.csv:q} "
        "--png {output.png:q} > {log:q} 2>&1"


rule mcu_figure8:
    input:
        code=code("mcu_figure8"),
    output:
        csv=f"{TABLES}/figure8.csv",
        png=report(f"{TABLES}/plots/figure8.png", category="Microcontroller"),
    log:
        f"{LOGS}/mcu/figure8.log",
    benchmark:
        f"{BENCH}/mcu/figure8.tsv"
    params:
        bits=" ".join(str(b) for b in MCU["figure8_bits"]),
        build=f"{RESULTS}/mcu/figure8",
        mcu=MCU,
        seed=config["seed"],
    shell:
        "{PY} mcu_figure8 --channels {params.mcu[figure8_channels]} --bits {params.bits} --size {params.mcu[layer_size]} "
        "--k {params.mcu[layer_k]} --cpi {params.mcu[cpi]} --wait-states {params.mcu[wait_states]} --seed {params.seed} "
        "--build {params.build:q} --out {output.csv:q} --png {output.png:q} > {log:q} 2>&1"
