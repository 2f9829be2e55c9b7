# Trackers. Every method writes predictions in one format (docs/formats.md):
# results/{dataset}/predictions/{method}/{video}.{mode}.npz


rule track_chain:
    group:
        "video"
    input:
        frames="results/{dataset}/frames/{video}.npz",
        masks="results/{dataset}/masks/{video}",
        matches="results/{dataset}/matches/{video}.npz",
        manifest="results/{dataset}/manifest.json",
    output:
        "results/{dataset}/predictions/chain/{video}.{mode}.npz",
    params:
        chain=config["chain"],
        grid=config["grid"],
        version=version("track_chain"),
    log:
        "logs/{dataset}/track_chain/{video}.{mode}.log",
    benchmark:
        "benchmarks/{dataset}/track_chain/{video}.{mode}.tsv"
    threads: 1
    resources:
        mem_mb=mem_for(1000, 4),
        runtime=runtime_for(10, 1),
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/track_chain.py"
