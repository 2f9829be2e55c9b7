from omnitrack.pipeline import prepare_dataset
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "prepare_dataset"):
    prepare_dataset(
        name=snakemake.wildcards.dataset,
        spec=snakemake.params.spec,
        input_path=snakemake.input[0],
        manifest_path=snakemake.output.manifest,
    )
