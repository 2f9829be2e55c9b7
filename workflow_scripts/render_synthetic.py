from omnitrack.pipeline import render_synthetic
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "render_synthetic"):
    render_synthetic(spec=snakemake.params.spec, out_path=snakemake.output[0])
