from omnitrack.workflow.logs import stage_log
from omnitrack.pipeline import track_chain

with stage_log(snakemake.log[0], "track_chain"):
    track_chain(snakemake.input.frames, snakemake.input.masks, snakemake.input.matches,
                snakemake.input.get("truth"), snakemake.wildcards.video, snakemake.wildcards.mode,
                snakemake.output[0], snakemake.params.chain, snakemake.params.grid)
