from omnitrack.plots import loss_curves
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "plot_loss"):
    loss_curves(
        loss_csvs=list(snakemake.input),
        out_png=snakemake.output[0],
        title=f"nvp optimisation loss ({snakemake.wildcards.dataset})",
    )
