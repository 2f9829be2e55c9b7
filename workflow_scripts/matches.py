from omnitrack.workflow.logs import configure_threads, stage_log
from omnitrack.pipeline import find_matches

with stage_log(snakemake.log[0], "matches"):
    configure_threads(snakemake.threads)
    find_matches(snakemake.input.frames, snakemake.input.features, snakemake.output[0], snakemake.params.matches)
