# omnitrack: dense point tracking by per-video optimisation, benchmarked on TAP-Vid.
# Usage: snakemake --cores N   (see README.md). Rules live in rules/, logic in omnitrack/.
import sys

from snakemake.utils import min_version, validate

min_version("9.0")
sys.path.insert(0, workflow.basedir)
from omnitrack.config import check_config


configfile: "config.yaml"


report: "report/workflow.rst"


check_config(config, f"{workflow.basedir}/schemas/config.schema.yaml", "config (config.yaml, --configfile, --config)")
validate(config, "schemas/config.schema.yaml")


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
        "results/summary.csv",
        expand("results/{dataset}/summary.csv", dataset=sorted(DATASETS)),
        report_targets,
