rule table4:
    output:
        csv=f"{TABLES}/table4.csv",
        md=f"{TABLES}/table4.md",
    input:
        metrics=table4_metrics(),
        code=code("wp/tables.py", "wp/paper.py", "wp/stages/table4.py"),
    log:
        f"{LOGS}/table4.log",
    benchmark:
        f"{BENCH}/table4.tsv"
    shell:
        "{PY} table4 --metrics {input.metrics:q} --out {output.csv:q} --md {output.md:q} > {log:q} 2>&1"
