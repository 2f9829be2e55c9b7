from omnitrack.workflow.logs import configure_threads, stage_log
from omnitrack.pipeline import estimate_depth

with stage_log(snakemake.log[0], "depth"):
    configure_threads(snakemake.threads)
    estimate_depth(snakemake.input.frames, snakemake.input.get("masks"), snakemake.output[0],
                   snakemake.params.depth, snakemake.params.device, version=snakemake.params.version)
