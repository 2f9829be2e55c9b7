from omnitrack.io import read_json
from omnitrack.logs import stage_log
from omnitrack.visualise import visualise_prediction

with stage_log(snakemake.log[0], "visualise"):
    wc = snakemake.wildcards
    manifest = read_json(snakemake.input.manifest)
    source = manifest["sources"][wc.video] if manifest["has_gt"] else None
    visualise_prediction(snakemake.input.frames, snakemake.input.prediction, snakemake.output.mp4,
                         snakemake.output.preview, snakemake.params.cfg, source_path=source, mode=wc.mode,
                         label=f"prediction ({wc.method}, {wc.mode})", viewer_path=snakemake.output.viewer,
                         depth_preview=snakemake.input.get("depth") or None)
