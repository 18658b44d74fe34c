# Comparison with related methods (issue 7): one job per (dataset, network, method, setting), each
# starting from the shared pretrained network, then one table + Pareto plot over all of them.


rule compare_train:
    input:
        data=result(wpnames.DATA),
        ckpt=result(wpnames.PRETRAINED, ".pt"),
        code=lambda wc: needed(code("compare", wc.method), wc),
    output:
        ckpt=result(wpnames.COMPARE, ".pt"),
        metrics=result(wpnames.COMPARE, ".json"),
    log:
        f"{LOGS}/compare/{{dataset}}/{{network}}/{{method}}/{{setting}}.log",
    benchmark:
        f"{BENCH}/compare/{{dataset}}/{{network}}/{{method}}/{{setting}}.tsv"
    wildcard_constraints:
        method="prune|ternary|valueset",
        setting="[A-Za-z0-9_.]+",
    threads: config["threads"]
    resources:
        gpu=GPU,
    params:
        hparams=lambda wc: hparams_json(wc.method, wc.network),
        options=lambda wc: compare_options(wc.method),
        seed=config["seed"],
        device=RESOLVED_DEVICE,
        torch_threads=TORCH_THREADS,
    shell:
        "{PY} compare --method {wildcards.method} --setting {wildcards.setting:q} --data {input.data:q} "
        "--checkpoint {input.ckpt:q} --network {wildcards.network} --hparams {params.hparams:q} "
        "--options {params.options:q} --seed {params.seed} --device {DEVICE} --threads {params.torch_threads} "
        "--out {output.ckpt:q} --metrics {output.metrics:q} > {log:q} 2>&1"


rule compare_sharing:
    input:
        data=result(wpnames.DATA),
        ckpt=result(wpnames.PRETRAINED, ".pt"),
        pretrain_metrics=result(wpnames.PRETRAINED, ".json"),
        code=code("compare", "sharing"),
    output:
        ckpt=result(wpnames.COMPARE, ".pt", method="sharing"),
        metrics=result(wpnames.COMPARE, ".json", method="sharing"),
    log:
        f"{LOGS}/compare/{{dataset}}/{{network}}/sharing/{{setting}}.log",
    benchmark:
        f"{BENCH}/compare/{{dataset}}/{{network}}/sharing/{{setting}}.tsv"
    wildcard_constraints:
        setting="[0-9.]+",
    threads: config["threads"]
    resources:
        gpu=GPU,
    params:
        options=compare_options("sharing"),
        seed=config["seed"],
        device=RESOLVED_DEVICE,
        torch_threads=TORCH_THREADS,
    shell:
        "{PY} compare --method sharing --setting {wildcards.setting} --data {input.data:q} "
        "--checkpoint {input.ckpt:q} --pretrain-metrics {input.pretrain_metrics:q} --network {wildcards.network} "
        "--options {params.options:q} --seed {params.seed} --device {DEVICE} --threads {params.torch_threads} "
        "--out {output.ckpt:q} --metrics {output.metrics:q} > {log:q} 2>&1"


rule compare_table:
    input:
        metrics=compare_metrics(),
        checkpoints=compare_checkpoints(),
        code=code("compare_table"),
    output:
        csv=report(f"{TABLES}/compare.csv", category="Tables", caption="../report/compare.rst"),
        md=f"{TABLES}/compare.md",
        png=report(f"{TABLES}/plots/compare_pareto.png", category="Figures", caption="../report/compare_pareto.rst"),
    log:
        f"{LOGS}/compare_table.log",
    benchmark:
        f"{BENCH}/compare_table.tsv"
    shell:
        "{PY} compare_table --metrics {input.metrics:q} --checkpoints {input.checkpoints:q} --out {output.csv:q} "
        "--md {output.md:q} --png {output.png:q} > {log:q} 2>&1"
