"""The papers' ablation tables as data, and one command that reruns them at any budget (``pixforge reproduce``).

:mod:`pixforge.reproduce.tables` holds each table (its arms as config overrides, its metric, the paper's
numbers with their setting); :func:`pixforge.reproduce.runner.run_table` trains the arms, translates a
held-out split, scores it with ``pixforge compare`` and writes ours beside theirs.
"""

from pixforge.reproduce.runner import Budget, RunOptions, TableResult, output_stem, run_table
from pixforge.reproduce.tables import TABLES, Arm, Table

__all__ = ["TABLES", "Arm", "Budget", "RunOptions", "Table", "TableResult", "output_stem", "run_table"]
