"""What the launchers (torchrun, SLURM, Lightning) announce in the environment, read before any process group exists.
"""

from __future__ import annotations

import os

import torch


def global_rank_from_env(devices_per_node: int = 1) -> int:
    """This process's global rank as the launchers announce it, before any process group exists.

    ``RANK`` (torchrun, Lightning's subprocess launcher) > ``SLURM_PROCID`` (srun) >
    ``NODE_RANK·devices_per_node + LOCAL_RANK`` (Lightning's own multi-node launch); 0 otherwise — the
    process that starts a single-node DDP run is rank 0.
    """
    env = os.environ
    for key in ("RANK", "SLURM_PROCID"):
        if env.get(key, "").isdigit():
            return int(env[key])
    node = int(env.get("NODE_RANK", "0") or 0) if env.get("NODE_RANK", "0").isdigit() else 0
    local = int(env.get("LOCAL_RANK", "0")) if env.get("LOCAL_RANK", "0").isdigit() else 0
    return node * max(1, int(devices_per_node)) + local


def local_cuda_index() -> int:
    """The CUDA device of this process: ``LOCAL_RANK`` (torchrun, Lightning) > ``SLURM_LOCALID`` > the
    current device. Data must live there before Lightning's own setup moves the model."""
    for key in ("LOCAL_RANK", "SLURM_LOCALID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return torch.cuda.current_device()


def num_nodes_from_env() -> int:
    """Nodes of a multi-node job: ``LRBENCH_NUM_NODES`` > ``SLURM_NNODES`` (SLURM) >
    ``WORLD_SIZE / LOCAL_WORLD_SIZE`` (torchrun); 1 otherwise (Lightning's ``Trainer(num_nodes=...)``)."""
    env = os.environ
    for key in ("LRBENCH_NUM_NODES", "SLURM_NNODES"):
        if env.get(key, "").isdigit():
            return max(1, int(env[key]))
    if env.get("WORLD_SIZE", "").isdigit() and env.get("LOCAL_WORLD_SIZE", "").isdigit():
        return max(1, int(env["WORLD_SIZE"]) // max(1, int(env["LOCAL_WORLD_SIZE"])))
    return 1
