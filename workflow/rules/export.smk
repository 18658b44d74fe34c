# Deployable artifacts: the pool-K network as the files a microcontroller runtime needs (README
# "Exporting for a device"). Not in the default target: `snakemake --cores 4 all_exports`, or a file:
#   results/{dataset}/{network}/export/wp64/a8_lut8.h  (wp64_a4/a4_lut8.h: the act_train checkpoint)


rule export:
    input:
        data=result(wpnames.DATA),
        ckpt=eval_checkpoint,
        code=code("export"),
    output:
        npz=result(wpnames.EXPORT, ".npz"),
        json=result(wpnames.EXPORT, ".json"),
        h=result(wpnames.EXPORT, ".h"),
    log:
        f"{LOGS}/export/{{dataset}}/{{network}}/{{model}}/a{{abits}}_lut{{lbits}}.log",
    benchmark:
        f"{BENCH}/export/{{dataset}}/{{network}}/{{model}}/a{{abits}}_lut{{lbits}}.tsv"
    wildcard_constraints:
        lbits="[0-9]+",
    threads: config["threads"]
    resources:
        gpu=GPU,
    params:
        hparams=lambda wc: hparams_json("wp_train", wc.network),
        lut_mode=SWEEPS["lut_mode"],
        signed_mode=SWEEPS["signed_mode"],
        calibration=SWEEPS["calibration_images"],
        act_range=SWEEPS["act_range"],
        seed=config["seed"],
        device=RESOLVED_DEVICE,
        torch_threads=TORCH_THREADS,
    shell:
        "{PY} export --data {input.data:q} --checkpoint {input.ckpt:q} --network {wildcards.network} "
        "--act-bits {wildcards.abits} --lut-bits {wildcards.lbits} --lut-mode {params.lut_mode} "
        "--signed-mode {params.signed_mode} --calibration-images {params.calibration} --act-range {params.act_range} "
        "--hparams {params.hparams:q} --seed {params.seed} --device {DEVICE} --threads {params.torch_threads} "
        "--out-npz {output.npz:q} --out-json {output.json:q} --out-h {output.h:q} > {log:q} 2>&1"
