from omnitrack.plots import aj_per_video, delta_curves
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "plots"):
    dataset = snakemake.wildcards.dataset
    aj_per_video(summary_csv=snakemake.input.summary, out_png=snakemake.output.aj, title=f"AJ per video ({dataset})")
    delta_curves(
        summary_csv=snakemake.input.summary,
        out_png=snakemake.output.delta,
        title=f"Accuracy per threshold ({dataset}, mean over videos)",
    )
