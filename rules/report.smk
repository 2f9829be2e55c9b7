# Track videos, figures and the summary page for `snakemake --report results/report.html`.
# Outputs marked report() appear in the report with the captions in report/ (Snakemake catalog style).


rule visualise:
    input:
        unpack(gt_input),
        frames=rules.frames.output[0],
        prediction=prediction_of,
        depth=depth_video,
    output:
        mp4="results/{dataset}/visualise/{method}/{video}.{mode}.mp4",
        preview="results/{dataset}/visualise/{method}/{video}.{mode}.webp",
        viewer=report(
            "results/{dataset}/visualise/{method}/{video}.{mode}.html",
            caption="../report/track_video.rst",
            category="3. Track videos",
            subcategory="{dataset}",
            labels=video_labels,
        ),
    params:
        cfg={k: VISUALISE[k] for k in ("trail", "occluded", "fps", "preview_every", "preview_max_side", "min_side")},
        version=version("visualise"),
    log:
        "logs/{dataset}/visualise/{method}/{video}.{mode}.log",
    benchmark:
        "benchmarks/{dataset}/visualise/{method}/{video}.{mode}.tsv"
    threads: 1
    resources:
        mem_mb=mem_for(1000, 30),
        runtime=runtime_for(5, 1),
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/visualise.py"


rule plots:
    input:
        summary=rules.summarise_dataset.output[0],
    output:
        aj=report(
            "results/{dataset}/plots/aj_per_video.png",
            caption="../report/aj_per_video.rst",
            category="2. Plots",
            subcategory="{dataset}",
            labels={"figure": "AJ per video"},
        ),
        delta=report(
            "results/{dataset}/plots/delta_curves.png",
            caption="../report/delta_curves.rst",
            category="2. Plots",
            subcategory="{dataset}",
            labels={"figure": "accuracy per threshold"},
        ),
    log:
        "logs/{dataset}/plots.log",
    benchmark:
        "benchmarks/{dataset}/plots.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/plots.py"


rule plot_loss:
    input:
        loss_csvs,
    output:
        report(
            "results/{dataset}/plots/nvp_loss.png",
            caption="../report/nvp_loss.rst",
            category="2. Plots",
            subcategory="{dataset}",
            labels={"figure": "nvp loss"},
        ),
    log:
        "logs/{dataset}/plot_loss.log",
    benchmark:
        "benchmarks/{dataset}/plot_loss.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/plot_loss.py"


rule summary_page:
    input:
        summary=rules.summarise.output[0],
    output:
        report(
            "results/report/summary.html",
            caption="../report/summary_page.rst",
            category="1. Summary",
            labels={"table": "mean over videos (HTML)"},
        ),
    log:
        "logs/summary_page.log",
    benchmark:
        "benchmarks/summary_page.tsv"
    localrule: True
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/omnitrack.yaml"
    script:
        "../workflow_scripts/summary_page.py"


rule report_assets:
    """Only what the report shows: `snakemake --cores N report_assets`, then `snakemake --report ...`."""
    input:
        report_targets,
