from omnitrack.evaluation.summary import video_rows, write_csv
from omnitrack.workflow.logs import stage_log

with stage_log(snakemake.log[0], "summarise_dataset"):
    write_csv(video_rows(snakemake.wildcards.dataset, snakemake.params.rows, snakemake.params.settings),
              snakemake.output[0])
