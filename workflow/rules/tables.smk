rule table4:
    input:
        metrics=table4_metrics(),
        code=code("table4"),
    output:
        csv=report(f"{TABLES}/table4.csv", category="Tables", caption="../report/table4.rst"),
        md=f"{TABLES}/table4.md",
    log:
        f"{LOGS}/table4.log",
    benchmark:
        f"{BENCH}/table4.tsv"
    shell:
        "{PY} table4 --metrics {input.metrics:q} --out {output.csv:q} --md {output.md:q} > {log:q} 2>&1"


rule plots:
    input:
        table4=f"{TABLES}/table4.csv",
        metrics=table4_metrics(),
        code=code("plots"),
    output:
        pool=report(f"{TABLES}/plots/accuracy_vs_pool_size.png", category="Figures", caption="../report/pool_size.rst"),
        curves=report(
            f"{TABLES}/plots/training_curves.png", category="Figures", caption="../report/training_curves.rst"
        ),
    log:
        f"{LOGS}/plots.log",
    benchmark:
        f"{BENCH}/plots.tsv"
    shell:
        "{PY} plots --table4 {input.table4:q} --metrics {input.metrics:q} --pool-png {output.pool:q} "
        "--curves-png {output.curves:q} > {log:q} 2>&1"
