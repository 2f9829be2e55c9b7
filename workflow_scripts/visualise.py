from omnitrack.workflow.logs import stage_log
from omnitrack.visualise import visualise_prediction

with stage_log(snakemake.log[0], "visualise"):
    wc = snakemake.wildcards
    visualise_prediction(snakemake.input.frames, snakemake.input.prediction, snakemake.output.mp4,
                         snakemake.output.preview, snakemake.params.cfg, source_path=snakemake.input.get("truth"),
                         mode=wc.mode, label=f"prediction ({wc.method}, {wc.mode})", viewer_path=snakemake.output.viewer,
                         depth_preview=snakemake.input.get("depth") or None)
