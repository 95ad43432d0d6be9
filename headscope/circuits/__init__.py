"""Tasks, the discrete-SAE circuit finder, patching baselines, JSON circuit reports (issue 4; papers.md §2–§3)."""

from headscope.circuits.finder import METHODS, CircuitConfig, CircuitResult, find_circuit
from headscope.circuits.patching import activation_patching, attribution_patching
from headscope.circuits.published import PublishedCircuit, published_circuits
from headscope.circuits.report import (
    SCHEMA_VERSION,
    compare_reports,
    loads_report,
    read_report,
    validate_report,
    write_report,
)
from headscope.circuits.sae import DiscreteSAE, SAEConfig, codes, train_sae
from headscope.circuits.scoring import edge_scores, node_scores, roc_auc
from headscope.circuits.tasks import TASKS, Example, TaskData, custom_task, make_task, register_task

__all__ = [
    "METHODS",
    "SCHEMA_VERSION",
    "TASKS",
    "CircuitConfig",
    "CircuitResult",
    "DiscreteSAE",
    "Example",
    "PublishedCircuit",
    "SAEConfig",
    "TaskData",
    "activation_patching",
    "attribution_patching",
    "codes",
    "compare_reports",
    "custom_task",
    "edge_scores",
    "find_circuit",
    "loads_report",
    "make_task",
    "node_scores",
    "published_circuits",
    "read_report",
    "register_task",
    "roc_auc",
    "train_sae",
    "validate_report",
    "write_report",
]
