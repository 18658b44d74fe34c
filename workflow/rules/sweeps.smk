# The deployed network (paper section 3, tables 3, 5, 6): the pool-K network run bit-serially from the
# lookup table with quantized activations. Every sweep point is its own job.


wildcard_constraints:
    model=wpnames.MODEL.pattern,
    abits="[0-9]+",
    lbits="[0-9]+|none",


rule quant_eval:
    input:
        data=result(wpnames.DATA),
        ckpt=eval_checkpoint,
        code=code("quant_eval"),
    output:
        result(wpnames.EVAL),
    log:
        f"{LOGS}/quant_eval/{{dataset}}/{{network}}/{{model}}/a{{abits}}_lut{{lbits}}.log",
    benchmark:
        f"{BENCH}/quant_eval/{{dataset}}/{{network}}/{{model}}/a{{abits}}_lut{{lbits}}.tsv"
    threads: config["threads"]
    resources:
        gpu=GPU,
    params:
        hparams=lambda wc: hparams_json("wp_train", wc.network),
        lut_mode=SWEEPS["lut_mode"],
        signed_mode=SWEEPS["signed_mode"],
        calibration=SWEEPS["calibration_images"],
        act_range=SWEEPS["act_range"],
        test_images="" if SWEEPS["test_images"] is None else f"--test-images {SWEEPS['test_images']}",
        seed=config["seed"],
        device=RESOLVED_DEVICE,
        torch_threads=TORCH_THREADS,
    shell:
        "{PY} quant_eval --data {input.data:q} --checkpoint {input.ckpt:q} --network {wildcards.network} "
        "--act-bits {wildcards.abits} --lut-bits {wildcards.lbits} --lut-mode {params.lut_mode} "
        "--signed-mode {params.signed_mode} --calibration-images {params.calibration} --act-range {params.act_range} --hparams {params.hparams:q} "
        "{params.test_images} --seed {params.seed} --device {DEVICE} --threads {params.torch_threads} "
        "--metrics {output:q} > {log:q} 2>&1"


rule act_train:
    input:
        data=result(wpnames.DATA),
        ckpt=result(wpnames.POOLED, ".pt"),
        code=code("act_train"),
    output:
        ckpt=result(wpnames.RETRAINED, ".pt"),
        metrics=result(wpnames.RETRAINED, ".json"),
    log:
        f"{LOGS}/act_train/{{dataset}}/{{network}}/wp{{k}}_a{{abits}}.log",
    benchmark:
        f"{BENCH}/act_train/{{dataset}}/{{network}}/wp{{k}}_a{{abits}}.tsv"
    threads: config["threads"]
    resources:
        gpu=GPU,
    params:
        hparams=lambda wc: hparams_json("act_train", wc.network),
        ste="" if SWEEPS["table6"]["ste"] else "--no-ste",
        start=SWEEPS["table6"]["start"],
        calibration=SWEEPS["calibration_images"],
        act_range=SWEEPS["act_range"],
        seed=config["seed"],
        device=RESOLVED_DEVICE,
        torch_threads=TORCH_THREADS,
    shell:
        "{PY} act_train --data {input.data:q} --checkpoint {input.ckpt:q} --network {wildcards.network} "
        "--act-bits {wildcards.abits} {params.ste} --start {params.start} --calibration-images {params.calibration} "
        "--act-range {params.act_range} --hparams {params.hparams:q} "
        "--seed {params.seed} --device {DEVICE} --threads {params.torch_threads} --out {output.ckpt:q} "
        "--metrics {output.metrics:q} > {log:q} 2>&1"


rule table3:
    input:
        ckpts=table3_checkpoints(),
        code=code("table3"),
    output:
        csv=report(f"{TABLES}/table3.csv", category="Tables", caption="../report/table3.rst"),
        md=f"{TABLES}/table3.md",
    log:
        f"{LOGS}/table3.log",
    benchmark:
        f"{BENCH}/table3.tsv"
    params:
        lut_bits=SWEEPS["table3"]["lut_bits"],
    shell:
        "{PY} table3 --checkpoints {input.ckpts:q} --lut-bits {params.lut_bits} --out {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


rule table8:
    input:
        ckpts=table3_checkpoints(),
        code=code("table8"),
    output:
        csv=report(f"{TABLES}/table8.csv", category="Tables", caption="../report/table8.rst"),
        md=f"{TABLES}/table8.md",
    log:
        f"{LOGS}/table8.log",
    benchmark:
        f"{BENCH}/table8.tsv"
    shell:
        "{PY} table8 --checkpoints {input.ckpts:q} --out {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


rule table5:
    input:
        evals=table5_evals(),
        wp=table5_wp_metrics(),
        code=code("table5"),
    output:
        csv=report(f"{TABLES}/table5.csv", category="Tables", caption="../report/table5.rst"),
        md=f"{TABLES}/table5.md",
    log:
        f"{LOGS}/table5.log",
    benchmark:
        f"{BENCH}/table5.tsv"
    shell:
        "{PY} table5 --evals {input.evals:q} --wp-metrics {input.wp:q} --out {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


rule table6:
    input:
        evals=table6_evals(),
        code=code("table6"),
    output:
        csv=report(f"{TABLES}/table6.csv", category="Tables", caption="../report/table6.rst"),
        md=f"{TABLES}/table6.md",
    log:
        f"{LOGS}/table6.log",
    benchmark:
        f"{BENCH}/table6.tsv"
    shell:
        "{PY} table6 --evals {input.evals:q} --out {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


rule sweep_plots:
    input:
        table5=f"{TABLES}/table5.csv",
        table6=f"{TABLES}/table6.csv",
        code=code("sweep_plots"),
    output:
        lut=report(f"{TABLES}/plots/accuracy_vs_lut_bits.png", category="Figures", caption="../report/lut_bits.rst"),
        act=report(f"{TABLES}/plots/accuracy_vs_act_bits.png", category="Figures", caption="../report/act_bits.rst"),
    log:
        f"{LOGS}/sweep_plots.log",
    benchmark:
        f"{BENCH}/sweep_plots.tsv"
    shell:
        "{PY} sweep_plots --table5 {input.table5:q} --table6 {input.table6:q} --lut-png {output.lut:q} "
        "--act-png {output.act:q} > {log:q} 2>&1"
