# Dense descriptors per frame (for the appearance check and for long-term matches), then matches.


rule features:
    group:
        "video"
    input:
        frames=rules.frames.output[0],
    output:
        "results/{dataset}/features/{video}.{purpose}.npz",
    params:
        spec=feature_spec,
        cell=config["features"]["cell"],
        device=config["device"],
        version=version("features"),
    log:
        "logs/{dataset}/features/{video}.{purpose}.log",
    benchmark:
        "benchmarks/{dataset}/features/{video}.{purpose}.tsv"
    threads: 2
    resources:
        gpu=features_gpu,
        mem_mb=mem_for(2000, 4),
        runtime=runtime_for(20, 1),
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/features.py"


rule matches:
    group:
        "video"
    input:
        frames=rules.frames.output[0],
        features=fill(rules.features.output[0], purpose="match"),
    output:
        "results/{dataset}/matches/{video}.npz",
    params:
        matches=config["matches"],
        version=version("matches"),
    log:
        "logs/{dataset}/matches/{video}.log",
    benchmark:
        "benchmarks/{dataset}/matches/{video}.tsv"
    threads: 2
    resources:
        mem_mb=mem_for(2000, 4),
        runtime=runtime_for(20, 1),
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/matches.py"
