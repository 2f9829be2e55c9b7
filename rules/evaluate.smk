# TAP-Vid metrics per video and query mode, then the summary tables.


rule evaluate:
    input:
        prediction="results/{dataset}/predictions/{method}/{video}.{mode}.npz",
        manifest="results/{dataset}/manifest.json",
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
    script:
        "../workflow_scripts/evaluate.py"


def dataset_rows(wildcards):
    """One entry per (video, method, mode): its metrics (if any), prediction and stage benchmarks."""
    ds = wildcards.dataset
    has_gt = DATASETS[ds]["kind"] in GT_KINDS
    rows = []
    for video in videos_of(ds):
        for method in config["methods"]:
            for mode in modes_of(ds):
                rows.append(
                    {
                        "video": video,
                        "method": method,
                        "mode": mode,
                        "prediction": f"results/{ds}/predictions/{method}/{video}.{mode}.npz",
                        "metrics": f"results/{ds}/metrics/{method}/{video}.{mode}.json" if has_gt else None,
                        "benchmarks": stage_benchmarks(ds, video, method, mode),
                    }
                )
    return rows


def dataset_summary_input(wildcards):
    files = []
    for row in dataset_rows(wildcards):
        files.append(row["prediction"])
        if row["metrics"]:
            files.append(row["metrics"])
        files.extend(row["benchmarks"].values())
    return files


rule summarise_dataset:
    input:
        dataset_summary_input,
    output:
        "results/{dataset}/summary.csv",
    params:
        rows=dataset_rows,
        settings=summary_settings,
    log:
        "logs/{dataset}/summarise.log",
    benchmark:
        "benchmarks/{dataset}/summarise.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/summarise_dataset.py"


rule summarise:
    input:
        expand("results/{dataset}/summary.csv", dataset=sorted(DATASETS)),
    output:
        "results/summary.csv",
    params:
        datasets=sorted(DATASETS),
    log:
        "logs/summarise.log",
    benchmark:
        "benchmarks/summarise.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/summarise.py"
