# The depth the nvp fit starts from (per video): layers (weight-free, from the masks' flows and
# occlusions), depth_anything_v2 (a monocular model's release file), motion (the former motion start)
# or none (constant). Between the masks stage and optimise; formats in docs/formats.md.


rule depth:
    group:
        None if DEPTH_MODEL else "video"  # weight-free methods join the per-video CPU group
    input:
        unpack(depth_input),
    output:
        "results/{dataset}/depth/{video}.npz",
    params:
        depth=depth_params,
        device=config["device"],
        version=version("depth"),
    log:
        "logs/{dataset}/depth/{video}.log",
    benchmark:
        "benchmarks/{dataset}/depth/{video}.tsv"
    threads: 2 if DEPTH_MODEL else 1
    resources:
        gpu=1 if DEPTH_MODEL else 0,
        mem_mb=mem_for(2000, 8),
        runtime=runtime_for(20, 1),
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/depth.py"


rule visualise_depth:
    input:
        frames=rules.frames.output[0],
        depth=rules.depth.output[0],
    output:
        mp4="results/{dataset}/visualise/depth/{video}.mp4",
        preview="results/{dataset}/visualise/depth/{video}.webp",
    params:
        cfg={k: VISUALISE[k] for k in ("fps", "preview_every", "preview_max_side", "min_side")},
        version=version("visualise_depth"),
    log:
        "logs/{dataset}/visualise_depth/{video}.log",
    benchmark:
        "benchmarks/{dataset}/visualise_depth/{video}.tsv"
    threads: 1
    resources:
        mem_mb=mem_for(1000, 30),
        runtime=runtime_for(5, 1),
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/visualise_depth.py"
