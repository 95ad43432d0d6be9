"""Batch jobs: any `headscope` command as a job, run in-process or on a Ray cluster (see README.md)."""

from headscope.batch.execute import Outcome, execute
from headscope.batch.jobs import Job, parse_jobs, read_jobs
from headscope.batch.ray_runner import RayRunner, connect
from headscope.batch.runner import InProcessRunner, run_batch

__all__ = [
    "InProcessRunner",
    "Job",
    "Outcome",
    "RayRunner",
    "connect",
    "execute",
    "parse_jobs",
    "read_jobs",
    "run_batch",
]
