# TAP-Vid metrics per video and query mode, then the summary tables.


rule evaluate:
    input:
        prediction=prediction_of,
        truth=video_source,
    output:
        "results/{dataset}/metrics/{method}/{video}.{mode}.json",
    params:
        version=version("evaluate"),
    log:
        "logs/{dataset}/evaluate/{method}/{video}.{mode}.log",
    benchmark:
        "benchmarks/{dataset}/evaluate/{method}/{video}.{mode}.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/evaluate.py"


rule summarise_dataset:
    input:
        dataset_summary_input,
    output:
        report(
            "results/{dataset}/summary.csv",
            caption="../report/summary_dataset.rst",
            category="1. Summary",
            labels={"table": "{dataset}/summary.csv (per video)"},
        ),
    params:
        rows=dataset_rows,
        settings=summary_settings,
        version=version("summary"),
    log:
        "logs/{dataset}/summarise.log",
    benchmark:
        "benchmarks/{dataset}/summarise.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/summarise_dataset.py"


rule summarise:
    input:
        expand(rules.summarise_dataset.output[0], dataset=summary_datasets()),
    output:
        report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="1. Summary",
            labels={"table": "summary.csv (all datasets)"},
        ),
    params:
        datasets=summary_datasets(),
        configured=sorted(config["datasets"]),
        version=version("summary"),
    log:
        "logs/summarise.log",
    benchmark:
        "benchmarks/summarise.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/summarise.py"
