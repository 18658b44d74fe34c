rule cluster:
    input:
        ckpt=result(wpnames.PRETRAINED, ".pt"),
        code=code("cluster"),
    output:
        result(wpnames.POOL),
    log:
        f"{LOGS}/cluster/{{dataset}}/{{network}}/pool{{k}}.log",
    benchmark:
        f"{BENCH}/cluster/{{dataset}}/{{network}}/pool{{k}}.tsv"
    threads: config["threads"]
    params:
        seed=config["seed"],
        device=RESOLVED_DEVICE,
        torch_threads=TORCH_THREADS,
        backend=config["kmeans"]["backend"],
        init=config["kmeans"]["init"],
        max_iter=config["kmeans"]["max_iter"],
        tol=config["kmeans"]["tol"],
        pool_fc="--pool-fc" if config["pool_fc"] else "",
        selection=lambda wc: json.dumps((config["pooled_layers"]).get(wc.network, {}), sort_keys=True),
        pool_scale=config["pool_scale"],
    shell:
        "{PY} cluster --checkpoint {input.ckpt:q} --network {wildcards.network} --k {wildcards.k} "
        "--backend {params.backend} --init {params.init:q} --max-iter {params.max_iter} --tol {params.tol} "
        "{params.pool_fc} --layer-selection {params.selection:q} --pool-scale {params.pool_scale} --seed {params.seed} "
        "--device {DEVICE} --threads {params.torch_threads} --out {output:q} > {log:q} 2>&1"


rule wp_train:
    input:
        data=result(wpnames.DATA),
        ckpt=result(wpnames.PRETRAINED, ".pt"),
        pool=result(wpnames.POOL),
        code=code("wp_train"),
    output:
        ckpt=result(wpnames.POOLED, ".pt"),
        metrics=result(wpnames.POOLED, ".json"),
    log:
        f"{LOGS}/wp_train/{{dataset}}/{{network}}/wp{{k}}.log",
    benchmark:
        f"{BENCH}/wp_train/{{dataset}}/{{network}}/wp{{k}}.tsv"
    threads: config["threads"]
    resources:
        gpu=GPU,
    params:
        hparams=lambda wc: hparams_json("wp_train", wc.network),
        # the temperatures only where they are used: changing them reruns soft-assigned retrainings alone
        assign=POOL_ASSIGN_ARGS,
        seed=config["seed"],
        device=RESOLVED_DEVICE,
        torch_threads=TORCH_THREADS,
    shell:
        "{PY} wp_train --data {input.data:q} --checkpoint {input.ckpt:q} --pool {input.pool:q} "
        "--network {wildcards.network} --hparams {params.hparams:q} {params.assign} --seed {params.seed} --device {DEVICE} "
        "--threads {params.torch_threads} --out {output.ckpt:q} --metrics {output.metrics:q} > {log:q} 2>&1"
