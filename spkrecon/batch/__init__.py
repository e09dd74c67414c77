"""Many recordings at once: batch reconstruction that resumes, isolates failures, runs in
parallel (``jobs`` worker processes) and across machines (torchrun ranks, SLURM tasks).

>>> from spkrecon.batch import BatchSettings, run_batch
>>> report = run_batch(["recordings/"], "out/", BatchSettings(kind="video", method="tfp"))
>>> report.counts()                      # {"done": 18, "skipped": 2} ...

The output folder holds one output per recording (named after it) and ``manifest.jsonl``
(:mod:`spkrecon.batch.manifest`); docs/batch.md describes both. Nothing here imports torch
unless a network runs or torchrun's ranks must meet.
"""

from spkrecon.batch.inputs import Recording, collect
from spkrecon.batch.manifest import MANIFEST, Manifest
from spkrecon.batch.render import BatchSettings
from spkrecon.batch.runner import BatchInterrupted, BatchReport, run_batch
from spkrecon.batch.shard import Shard, parse_shard, shard_from_env

__all__ = ["MANIFEST", "BatchInterrupted", "BatchReport", "BatchSettings", "Manifest",
           "Recording", "Shard", "collect", "parse_shard", "run_batch", "shard_from_env"]
