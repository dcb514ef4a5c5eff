"""What an xdist worker sets up for itself: its share of the cores, and its GPU."""

from __future__ import annotations

import dataclasses
import os

__all__ = ["share_cores", "one_gpu_per_worker"]


def one_gpu_per_worker(options, worker_id: str | None):
    """With ``--qclip-device cuda`` on worker ``gw<i>``: the options with ``cuda:(i mod device_count)``
    (:func:`qclip.run.options.worker_device`); other devices and named ``cuda:N`` stay as given."""
    from .options import worker_device

    if options.session.device != "cuda":
        return options
    import torch

    device = worker_device("cuda", worker_id, torch.cuda.device_count())
    return dataclasses.replace(options, session=dataclasses.replace(options.session, device=device))


def share_cores(workers: int) -> int | None:
    """On an xdist worker: limit torch and the BLAS/OpenMP pools to this worker's share of the cores.

    Every worker would otherwise start a pool as wide as the machine: with ``-n 2`` on 2 cores four
    spinning pools fight over two cores, and an SVD that takes 20 ms alone took 2 s. A user's own
    ``OMP_NUM_THREADS`` wins. Returns the threads per worker (None when left alone).
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch
    from threadpoolctl import threadpool_limits

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = max(1, cores // max(1, workers))
    torch.set_num_threads(share)
    threadpool_limits(share)
    return share
