from omnitrack.workflow.logs import stage_log
from omnitrack.pipeline import prepare_dataset

with stage_log(snakemake.log[0], "prepare_dataset"):
    prepare_dataset(snakemake.wildcards.dataset, snakemake.params.spec, snakemake.input[0], snakemake.output.manifest)
