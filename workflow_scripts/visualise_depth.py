from omnitrack.workflow.logs import stage_log
from omnitrack.visualise import visualise_depth

with stage_log(snakemake.log[0], "visualise_depth"):
    visualise_depth(snakemake.input.frames, snakemake.input.depth, snakemake.output.mp4, snakemake.output.preview,
                    snakemake.params.cfg)
