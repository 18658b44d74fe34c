rule pretrain:
    input:
        data=result(wpnames.DATA),
        code=code("pretrain"),
    output:
        ckpt=result(wpnames.PRETRAINED, ".pt"),
        metrics=result(wpnames.PRETRAINED, ".json"),
    log:
        f"{LOGS}/pretrain/{{dataset}}/{{network}}.log",
    benchmark:
        f"{BENCH}/pretrain/{{dataset}}/{{network}}.tsv"
    threads: config["threads"]
    resources:
        gpu=GPU,
    params:
        hparams=lambda wc: hparams_json("pretrain", wc.network),
        seed=config["seed"],
        device=RESOLVED_DEVICE,
        torch_threads=TORCH_THREADS,
    shell:
        "{PY} pretrain --data {input.data:q} --network {wildcards.network} --hparams {params.hparams:q} "
        "--seed {params.seed} --device {DEVICE} --threads {params.torch_threads} "
        "--out {output.ckpt:q} --metrics {output.metrics:q} > {log:q} 2>&1"
