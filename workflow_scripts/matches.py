from omnitrack.pipeline import find_matches
from omnitrack.workflow.logs import configure_threads, stage_log

with stage_log(snakemake.log[0], "matches"):
    configure_threads(snakemake.threads)
    find_matches(
        frames_path=snakemake.input.frames,
        features_path=snakemake.input.features,
        out_path=snakemake.output[0],
        cfg=snakemake.params.matches,
    )
