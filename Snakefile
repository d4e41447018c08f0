# hicmix: Hi-C + epigenomic tracks -> tiles -> models. Run from the repository root (or a project folder
# holding config/):  snakemake --cores 4    (default: the embedded simulated genome)
#                    snakemake --cores 4 --configfile config/realdata.yaml
# See config/README.md for the config keys and sheet columns, docs/architecture.md for the stages.

import sys
from pathlib import Path

from snakemake.utils import min_version

from hicmix.config import load_sheets, validate_config
from hicmix.errors import ConfigError

min_version("9.0")


configfile: "config/config.yaml"


# Validation: config against workflow/schemas/config.schema.yaml (defaults filled in), then both sheets
# and their cross-checks. A problem is one line naming the sheet, row, column and fix.
SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"
try:
    validate_config(config, SCHEMAS)
    CELL_LINES, TRACKS = load_sheets(config, SCHEMAS)
except ConfigError as error:
    sys.exit(f"error: {error}")  # one line; a WorkflowError would add a traceback frame


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/balance.smk"
include: "workflow/rules/tiles.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets,
        task_targets,
        predict_targets,
        report_targets,
