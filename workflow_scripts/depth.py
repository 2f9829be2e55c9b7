from omnitrack.pipeline import estimate_depth
from omnitrack.workflow.logs import configure_threads, stage_log

with stage_log(snakemake.log[0], "depth"):
    configure_threads(snakemake.threads)
    estimate_depth(
        frames_path=snakemake.input.frames,
        masks_dir=snakemake.input.get("masks"),
        out_path=snakemake.output[0],
        cfg=snakemake.params.depth,
        device=snakemake.params.device,
        version=snakemake.params.version,
    )
