# The deployed network (paper section 3, tables 3, 5, 6): the pool-K network run bit-serially from the
# lookup table with quantized activations. Every sweep point is its own job.

wildcard_constraints:
    model="wp[0-9]+(_a[0-9]+)?",
    abits="[0-9]+",
    lbits="[0-9]+|none",


rule quant_eval:
    output:
        f"{RESULTS}/{{dataset}}/{{network}}/eval/{{model}}/a{{abits}}_lut{{lbits}}.json",
    input:
        data=f"{RESULTS}/{{dataset}}/data.h5",
        ckpt=eval_checkpoint,
        code=code("wp/models", "wp/train.py", "wp/checkpoint.py", "wp/pool.py", "wp/quant.py", "wp/lut.py",
                  "wp/lutnet.py", "wp/sweeps.py", "wp/stages/common.py", "wp/stages/quant_eval.py"),
    params:
        hparams=lambda wc: hparams_json("wp_train", wc.network),
        lut_mode=SWEEPS["lut_mode"],
        signed_mode=SWEEPS["signed_mode"],
        calibration=SWEEPS["calibration_images"],
        act_range=SWEEPS["act_range"],
        test_images="" if SWEEPS["test_images"] is None else f"--test-images {SWEEPS['test_images']}",
        seed=config["seed"],
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        f"{LOGS}/quant_eval/{{dataset}}/{{network}}/{{model}}/a{{abits}}_lut{{lbits}}.log",
    benchmark:
        f"{BENCH}/quant_eval/{{dataset}}/{{network}}/{{model}}/a{{abits}}_lut{{lbits}}.tsv"
    shell:
        "{PY} quant_eval --data {input.data:q} --checkpoint {input.ckpt:q} --network {wildcards.network} "
        "--act-bits {wildcards.abits} --lut-bits {wildcards.lbits} --lut-mode {params.lut_mode} "
        "--signed-mode {params.signed_mode} --calibration-images {params.calibration} --act-range {params.act_range} --hparams {params.hparams:q} "
        "{params.test_images} --seed {params.seed} --device {params.device} --threads {threads} --metrics {output:q} > {log:q} 2>&1"


rule act_train:
    output:
        ckpt=f"{RESULTS}/{{dataset}}/{{network}}/retrain/wp{{k}}_a{{abits}}.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{network}}/retrain/wp{{k}}_a{{abits}}.json",
    input:
        data=f"{RESULTS}/{{dataset}}/data.h5",
        ckpt=f"{RESULTS}/{{dataset}}/{{network}}/wp{{k}}.pt",
        code=code("wp/models", "wp/train.py", "wp/augment.py", "wp/checkpoint.py", "wp/pool.py", "wp/quant.py",
                  "wp/lut.py", "wp/lutnet.py", "wp/stages/common.py", "wp/stages/quant_eval.py", "wp/stages/act_train.py"),
    params:
        hparams=lambda wc: hparams_json("act_train", wc.network),
        ste="" if SWEEPS["table6"]["ste"] else "--no-ste",
        calibration=SWEEPS["calibration_images"],
        act_range=SWEEPS["act_range"],
        seed=config["seed"],
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        f"{LOGS}/act_train/{{dataset}}/{{network}}/wp{{k}}_a{{abits}}.log",
    benchmark:
        f"{BENCH}/act_train/{{dataset}}/{{network}}/wp{{k}}_a{{abits}}.tsv"
    shell:
        "{PY} act_train --data {input.data:q} --checkpoint {input.ckpt:q} --network {wildcards.network} "
        "--act-bits {wildcards.abits} {params.ste} --calibration-images {params.calibration} --act-range {params.act_range} --hparams {params.hparams:q} "
        "--seed {params.seed} --device {params.device} --threads {threads} --out {output.ckpt:q} "
        "--metrics {output.metrics:q} > {log:q} 2>&1"


rule table3:
    output:
        csv=report(f"{TABLES}/table3.csv", category="Tables", caption="../report/table3.rst"),
        md=f"{TABLES}/table3.md",
    input:
        ckpts=table3_checkpoints(),
        code=code("wp/models", "wp/checkpoint.py", "wp/compression.py", "wp/tables.py", "wp/paper.py", "wp/stages/table3.py"),
    params:
        lut_bits=SWEEPS["table3"]["lut_bits"],
    log:
        f"{LOGS}/table3.log",
    benchmark:
        f"{BENCH}/table3.tsv"
    shell:
        "{PY} table3 --checkpoints {input.ckpts:q} --lut-bits {params.lut_bits} --out {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


rule table5:
    output:
        csv=report(f"{TABLES}/table5.csv", category="Tables", caption="../report/table5.rst"),
        md=f"{TABLES}/table5.md",
    input:
        evals=table5_evals(),
        wp=table5_wp_metrics(),
        code=code("wp/tables.py", "wp/paper.py", "wp/stages/table5.py"),
    log:
        f"{LOGS}/table5.log",
    benchmark:
        f"{BENCH}/table5.tsv"
    shell:
        "{PY} table5 --evals {input.evals:q} --wp-metrics {input.wp:q} --out {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


rule table6:
    output:
        csv=report(f"{TABLES}/table6.csv", category="Tables", caption="../report/table6.rst"),
        md=f"{TABLES}/table6.md",
    input:
        evals=table6_evals(),
        code=code("wp/tables.py", "wp/paper.py", "wp/stages/table6.py"),
    log:
        f"{LOGS}/table6.log",
    benchmark:
        f"{BENCH}/table6.tsv"
    shell:
        "{PY} table6 --evals {input.evals:q} --out {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


rule sweep_plots:
    output:
        lut=report(f"{TABLES}/plots/accuracy_vs_lut_bits.png", category="Figures", caption="../report/lut_bits.rst"),
        act=report(f"{TABLES}/plots/accuracy_vs_act_bits.png", category="Figures", caption="../report/act_bits.rst"),
    input:
        table5=f"{TABLES}/table5.csv",
        table6=f"{TABLES}/table6.csv",
        code=code("wp/plots.py", "wp/stages/sweep_plots.py"),
    log:
        f"{LOGS}/sweep_plots.log",
    benchmark:
        f"{BENCH}/sweep_plots.tsv"
    shell:
        "{PY} sweep_plots --table5 {input.table5:q} --table6 {input.table6:q} --lut-png {output.lut:q} "
        "--act-png {output.act:q} > {log:q} 2>&1"
