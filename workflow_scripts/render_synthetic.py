from omnitrack.workflow.logs import stage_log
from omnitrack.pipeline import render_synthetic

with stage_log(snakemake.log[0], "render_synthetic"):
    render_synthetic(snakemake.params.spec, snakemake.output[0])
