"""Circuits: tasks, a ground truth from batched activation patching, scored methods (discrete-SAE node/edge,
attribution patching, EAP-IG), faithfulness, edges, stability, typed results and JSON reports (papers.md §2, §3,
§9). See README.md for the file map."""

from headscope.circuits.attribution import attribution_patching, eap_ig
from headscope.circuits.config import GROUND_TRUTH_METHOD, METHODS, SIGNED_METHODS, CircuitConfig
from headscope.circuits.faithfulness import Ablation, ablate, faithfulness_curves
from headscope.circuits.finder import find_circuit, sae_methods, task_performance
from headscope.circuits.formats import FORMATS, export_report, import_report
from headscope.circuits.patching import activation_patching, activation_patching_unbatched, prepare
from headscope.circuits.published import PublishedCircuit, published_circuits
from headscope.circuits.report import (
    SCHEMA_VERSION,
    compare_reports,
    loads_report,
    migrate,
    read_report,
    validate_report,
    write_report,
)
from headscope.circuits.result import CircuitResult
from headscope.circuits.sae import DiscreteSAE, SAEConfig, codes, train_sae
from headscope.circuits.scoring import edge_scores, node_scores, roc_auc, roc_curve
from headscope.circuits.tasks import TASKS, Example, TaskData, custom_task, make_task, register_task

__all__ = [
    "FORMATS",
    "GROUND_TRUTH_METHOD",
    "METHODS",
    "SCHEMA_VERSION",
    "SIGNED_METHODS",
    "TASKS",
    "Ablation",
    "CircuitConfig",
    "CircuitResult",
    "DiscreteSAE",
    "Example",
    "PublishedCircuit",
    "SAEConfig",
    "TaskData",
    "ablate",
    "activation_patching",
    "activation_patching_unbatched",
    "attribution_patching",
    "codes",
    "compare_reports",
    "custom_task",
    "eap_ig",
    "edge_scores",
    "export_report",
    "faithfulness_curves",
    "find_circuit",
    "import_report",
    "loads_report",
    "make_task",
    "migrate",
    "node_scores",
    "prepare",
    "published_circuits",
    "read_report",
    "register_task",
    "roc_auc",
    "roc_curve",
    "sae_methods",
    "task_performance",
    "train_sae",
    "validate_report",
    "write_report",
]
