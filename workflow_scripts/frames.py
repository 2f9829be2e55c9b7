from omnitrack.workflow.logs import stage_log
from omnitrack.pipeline import make_frames

with stage_log(snakemake.log[0], "frames"):
    make_frames(snakemake.input.source, snakemake.wildcards.video, snakemake.output[0], snakemake.params.spec)
