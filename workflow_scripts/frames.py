from omnitrack.pipeline import make_frames
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "frames"):
    make_frames(
        record_path=snakemake.input.source,
        video=snakemake.wildcards.video,
        out_path=snakemake.output[0],
        spec=snakemake.params.spec,
    )
