from omnitrack.workflow.logs import configure_threads, stage_log
from omnitrack.pipeline import optimise

with stage_log(snakemake.log[0], "optimise"):
    configure_threads(snakemake.threads)
    optimise(snakemake.input.frames, snakemake.input.masks, snakemake.input.matches, snakemake.output.model,
             snakemake.output.loss, snakemake.params.nvp, depth_path=snakemake.input.depth)
