rule cluster:
    output:
        f"{RESULTS}/{{dataset}}/{{network}}/pool{{k}}.h5",
    input:
        ckpt=f"{RESULTS}/{{dataset}}/{{network}}/pretrained.pt",
        code=code("wp/models", "wp/checkpoint.py", "wp/pool.py", "wp/kmeans.py", "wp/stages/cluster.py"),
    params:
        seed=config["seed"],
        device=config["device"],
        backend=config["kmeans"]["backend"],
        init=config["kmeans"]["init"],
        max_iter=config["kmeans"]["max_iter"],
        tol=config["kmeans"]["tol"],
        pool_fc="--pool-fc" if config["pool_fc"] else "",
        pool_scale=config["pool_scale"],
    threads: config["threads"]
    log:
        f"{LOGS}/cluster/{{dataset}}/{{network}}/pool{{k}}.log",
    benchmark:
        f"{BENCH}/cluster/{{dataset}}/{{network}}/pool{{k}}.tsv"
    shell:
        "{PY} cluster --checkpoint {input.ckpt:q} --network {wildcards.network} --k {wildcards.k} "
        "--backend {params.backend} --init {params.init:q} --max-iter {params.max_iter} --tol {params.tol} "
        "{params.pool_fc} --pool-scale {params.pool_scale} --seed {params.seed} --device {params.device} --threads {threads} --out {output:q} > {log:q} 2>&1"


rule wp_train:
    output:
        ckpt=f"{RESULTS}/{{dataset}}/{{network}}/wp{{k}}.pt",
        metrics=f"{RESULTS}/{{dataset}}/{{network}}/wp{{k}}.json",
    input:
        data=f"{RESULTS}/{{dataset}}/data.h5",
        ckpt=f"{RESULTS}/{{dataset}}/{{network}}/pretrained.pt",
        pool=f"{RESULTS}/{{dataset}}/{{network}}/pool{{k}}.h5",
        code=code("wp/models", "wp/train.py", "wp/augment.py", "wp/checkpoint.py", "wp/pool.py",
                  "wp/stages/common.py", "wp/stages/cluster.py", "wp/stages/wp_train.py"),
    params:
        hparams=lambda wc: hparams_json("wp_train", wc.network),
        seed=config["seed"],
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=GPU,
    log:
        f"{LOGS}/wp_train/{{dataset}}/{{network}}/wp{{k}}.log",
    benchmark:
        f"{BENCH}/wp_train/{{dataset}}/{{network}}/wp{{k}}.tsv"
    shell:
        "{PY} wp_train --data {input.data:q} --checkpoint {input.ckpt:q} --pool {input.pool:q} "
        "--network {wildcards.network} --hparams {params.hparams:q} --seed {params.seed} --device {params.device} "
        "--threads {threads} --out {output.ckpt:q} --metrics {output.metrics:q} > {log:q} 2>&1"
