from omnitrack.workflow.logs import configure_threads, stage_log
from omnitrack.pipeline import estimate_flow

with stage_log(snakemake.log[0], "flow"):
    configure_threads(snakemake.threads)
    estimate_flow(snakemake.input[0], snakemake.output[0], snakemake.params.flow, snakemake.params.device)
