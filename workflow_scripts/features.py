from omnitrack.pipeline import extract_features
from omnitrack.workflow.logs import configure_threads, stage_log

with stage_log(snakemake.log[0], "features"):
    configure_threads(snakemake.threads)
    extract_features(
        frames_path=snakemake.input.frames,
        out_path=snakemake.output[0],
        spec=snakemake.params.spec,
        cell=snakemake.params.cell,
        device=snakemake.params.device,
    )
