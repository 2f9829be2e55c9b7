# Datasets -> per-video sources (checkpoint: the video list comes from the data) -> frames.


rule render_synthetic:
    output:
        "results/{dataset}/synthetic.pkl",
    params:
        spec=lambda wc: DATASETS[wc.dataset],
        version=version("synthetic"),
    log:
        "logs/{dataset}/render_synthetic.log",
    benchmark:
        "benchmarks/{dataset}/render_synthetic.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/render_synthetic.py"


checkpoint prepare_dataset:
    input:
        prepare_input,
    output:
        manifest="results/{dataset}/manifest.json",
        source=directory("results/{dataset}/source"),
    params:
        spec=lambda wc: DATASETS[wc.dataset],
        version=version("prepare"),
    log:
        "logs/{dataset}/prepare_dataset.log",
    benchmark:
        "benchmarks/{dataset}/prepare_dataset.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=mem_for(1000, 3),
        runtime=30,
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/prepare_dataset.py"


rule frames:
    group:
        "video"
    input:
        unpack(frames_input),
    output:
        "results/{dataset}/frames/{video}.npz",
    params:
        spec=lambda wc: DATASETS[wc.dataset],
        version=version("frames"),
    log:
        "logs/{dataset}/frames/{video}.log",
    benchmark:
        "benchmarks/{dataset}/frames/{video}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/frames.py"
