from omnitrack.workflow.logs import stage_log
from omnitrack.plots import aj_per_video, delta_curves, loss_curves, summary_table

with stage_log(snakemake.log[0], snakemake.rule):
    if snakemake.rule == "plots":
        aj_per_video(snakemake.input[0], snakemake.output.aj, f"AJ per video ({snakemake.wildcards.dataset})")
        delta_curves(snakemake.input[0], snakemake.output.delta,
                     f"Accuracy per threshold ({snakemake.wildcards.dataset}, mean over videos)")
    elif snakemake.rule == "plot_loss":
        loss_curves(list(snakemake.input), snakemake.output[0], f"nvp optimisation loss ({snakemake.wildcards.dataset})")
    else:
        summary_table(snakemake.input[0], snakemake.output[0])
