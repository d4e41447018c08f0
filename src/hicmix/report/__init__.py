"""The run report: one self-contained HTML page (results/report/index.html) of every task.

Tables (mean ± sd over seeds), generated comparison sentences and figures come only from
results/metrics.tsv and the prediction files of the run; see :func:`write_report`.
"""

from __future__ import annotations

from hicmix.report.build import ReportOptions, write_report

__all__ = ["ReportOptions", "write_report"]
