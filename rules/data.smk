# Datasets -> per-video sources (checkpoint: the video list comes from the data) -> frames.
# prepare_dataset writes the manifest (the video list: only dataset-level rules read it) and one source
# record per video, results/{dataset}/source/{video}.npz|json, rewritten only when its content changes.
# The records are not declared outputs (Snakemake would delete and rewrite them all on every relisting):
# a video's stages depend on its own record, so adding or removing a video reruns none of the others.


rule render_synthetic:
    output:
        "results/{dataset}/synthetic.pkl",
    params:
        spec=dataset_spec,
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
    params:
        spec=prepare_params,
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
        source=video_source,
    output:
        "results/{dataset}/frames/{video}.npz",
    params:
        spec=frames_spec,
        source=frames_source_stamp,
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
