rule prepare:
    output:
        f"{RESULTS}/{{dataset}}/data.h5",
    input:
        code=code("wp/data", "wp/stages/prepare.py"),
    params:
        data_dir=config["data_dir"],
        seed=config["seed"],
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    benchmark:
        f"{BENCH}/prepare/{{dataset}}.tsv"
    shell:
        "{PY} prepare --dataset {wildcards.dataset} --data-dir {params.data_dir:q} --seed {params.seed} "
        "--out {output:q} > {log:q} 2>&1"
