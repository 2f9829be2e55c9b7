# omnitrack: dense point tracking by per-video optimisation, benchmarked on TAP-Vid.
# Usage: snakemake --cores N   (see README.md). Rules live in rules/, logic in omnitrack/.
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")
sys.path.insert(0, workflow.basedir)
from omnitrack.workflow.config import check_config, check_config_files, check_device

# Config files are read strictly before use: not UTF-8, a YAML syntax error or a duplicate key is an
# error naming the file and line (Snakemake's own reader keeps the last duplicate silently). A
# --configfile that is not UTF-8 fails inside Snakemake before this file runs (`python -m omnitrack.workflow.config FILE`
# names the byte and line).
check_config_files(["config.yaml"] if os.path.exists("config.yaml") else [])


configfile: "config.yaml"


check_config_files(getattr(workflow, "overwrite_configfiles", None) or [])


report: "report/workflow.rst"


check_config(config, f"{workflow.basedir}/schemas/config.schema.yaml", "config (config.yaml, --configfile, --config)")
validate(config, "schemas/config.schema.yaml")
if workflow.is_main_process and workflow.local_exec:
    check_device(config["device"])  # on a cluster the jobs run where the GPUs are: not checked here


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/flow.smk"
include: "rules/features.smk"
include: "rules/depth.smk"
include: "rules/track.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        rules.summarise.output[0],
        expand(rules.summarise_dataset.output[0], dataset=sorted(DATASETS)),
        report_targets,
