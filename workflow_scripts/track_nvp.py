from omnitrack.workflow.logs import configure_threads, stage_log
from omnitrack.pipeline import track_nvp

with stage_log(snakemake.log[0], "track_nvp"):
    configure_threads(snakemake.threads)
    track_nvp(snakemake.input.model, snakemake.input.frames, snakemake.input.get("truth"), snakemake.wildcards.video,
              snakemake.wildcards.mode, snakemake.output[0], snakemake.params.grid, snakemake.params.device,
              snakemake.params.inference)
