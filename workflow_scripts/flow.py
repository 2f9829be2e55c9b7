from omnitrack.pipeline import estimate_flow
from omnitrack.workflow.logs import configure_threads, stage_log

with stage_log(snakemake.log[0], "flow"):
    configure_threads(snakemake.threads)
    estimate_flow(
        frames_path=snakemake.input.frames,
        out_dir=snakemake.output[0],
        cfg=snakemake.params.flow,
        device=snakemake.params.device,
    )
