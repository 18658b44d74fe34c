# Raw data is fetched (or read pre-staged) here: keep it on the submit host, where the network is.
localrules:
    prepare,


rule prepare:
    input:
        code=code("prepare"),
        own=lambda wc: own_dataset_file(wc.dataset),
    output:
        result(wpnames.DATA),
    log:
        f"{LOGS}/prepare/{{dataset}}.log",
    benchmark:
        f"{BENCH}/prepare/{{dataset}}.tsv"
    params:
        data_dir=config["data_dir"],
        seed=config["seed"],
        options=lambda wc: dataset_options(wc.dataset),
    shell:
        "{PY} prepare --dataset {wildcards.dataset} --data-dir {params.data_dir:q} --seed {params.seed} "
        "--options {params.options:q} --fetch-options {FETCH_OPTIONS:q} "
        "--out {output:q} > {log:q} 2>&1"
