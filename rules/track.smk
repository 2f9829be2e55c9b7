# Trackers. Every method writes predictions in one format (docs/formats.md, omnitrack/prediction.py):
# results/{dataset}/predictions/<method>/{video}.{mode}.npz


rule track_chain:
    group:
        "video"
    input:
        unpack(gt_input),
        frames=rules.frames.output[0],
        masks=rules.masks.output[0],
        matches=rules.matches.output[0],
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


rule optimise:
    input:
        frames=rules.frames.output[0],
        masks=rules.masks.output[0],
        matches=rules.matches.output[0],
        depth=rules.depth.output[0],
    output:
        model="results/{dataset}/models/{video}.pt",
        loss="results/{dataset}/models/{video}.loss.csv",
    params:
        nvp=nvp_config,
        version=version("optimise"),
    log:
        "logs/{dataset}/optimise/{video}.log",
    benchmark:
        "benchmarks/{dataset}/optimise/{video}.tsv"
    threads: 1  # one thread per fit: parallel fits beat a contended thread pool on CPU
    resources:
        gpu=1,
        mem_mb=mem_for(3000, 30),
        runtime=runtime_for(60, 10),
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/optimise.py"


rule track_nvp:
    input:
        unpack(gt_input),
        model=rules.optimise.output.model,
        frames=rules.frames.output[0],
    output:
        "results/{dataset}/predictions/nvp/{video}.{mode}.npz",
    params:
        grid=config["grid"],
        device=config["device"],
        inference=nvp_inference,
        version=version("track_nvp"),
    log:
        "logs/{dataset}/track_nvp/{video}.{mode}.log",
    benchmark:
        "benchmarks/{dataset}/track_nvp/{video}.{mode}.tsv"
    threads: 2
    resources:
        mem_mb=mem_for(2000, 10),
        runtime=runtime_for(15, 2),
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/track_nvp.py"
