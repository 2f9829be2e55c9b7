from omnitrack.visualise import visualise_prediction
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "visualise"):
    wc = snakemake.wildcards
    visualise_prediction(
        frames_path=snakemake.input.frames,
        prediction_path=snakemake.input.prediction,
        out_mp4=snakemake.output.mp4,
        preview_path=snakemake.output.preview,
        cfg=snakemake.params.cfg,
        source_path=snakemake.input.get("truth"),
        mode=wc.mode,
        label=f"prediction ({wc.method}, {wc.mode})",
        viewer_path=snakemake.output.viewer,
        depth_preview=snakemake.input.get("depth") or None,
    )
