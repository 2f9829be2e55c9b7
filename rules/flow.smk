# Optical flow for every pair of the window, then consistency masks, chaining and count maps.


rule flow:
    group:
        "video"
    input:
        frames=rules.frames.output[0],
    output:
        directory("results/{dataset}/flow/{video}"),
    params:
        flow=config["flow"],
        device=config["device"],
        version=version("flow"),
    log:
        "logs/{dataset}/flow/{video}.log",
    benchmark:
        "benchmarks/{dataset}/flow/{video}.tsv"
    threads: 4
    resources:
        gpu=1 if config["flow"]["method"] == "raft" else 0,
        mem_mb=mem_for(2000, 8),
        runtime=runtime_for(30, 2),
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/flow.py"


rule masks:
    group:
        "video"
    input:
        frames=rules.frames.output[0],
        flow=rules.flow.output[0],
        features=filter_features,
    output:
        directory("results/{dataset}/masks/{video}"),
    params:
        masks=config["masks"],
        version=version("masks"),
    log:
        "logs/{dataset}/masks/{video}.log",
    benchmark:
        "benchmarks/{dataset}/masks/{video}.tsv"
    threads: 1
    resources:
        mem_mb=mem_for(2000, 8),
        runtime=runtime_for(20, 1),
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/masks.py"
