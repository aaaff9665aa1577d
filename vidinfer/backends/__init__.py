"""Execution backends: what differs between the CPU and the GPU pipeline, behind one interface.

A `Pipeline` holds one backend, chosen by `vidinfer.devices.plan_device` from ``device``. Each
backend provides:

* ``make_source(...)``: a `PyAVSource` with the backend's decoding strategy;
* ``make_engine(path, input_size, threads, role, max_batch)``: an `Engine`;
* ``new_batch(input, slots)`` and ``launch(engine, batch, frames)``: fill the batch tensor from the
  frames and start the detector; ``launch`` returns a pending run whose ``outputs()`` are NumPy;
* ``crops``: the secondary classifiers' crop function (`SecondaryClassifier`'s ``crops``);
* ``host_frames(frames)``: the frames with host pixels, for stages that read pixels on the CPU;
* ``pipelined``: whether the pipeline may start batch k+1 before finishing batch k.

Only `cpu` is imported by default; `gpu` imports CuPy and the GPU engines when it is built.
"""

from __future__ import annotations

from typing import Any

from vidinfer.devices import DevicePlan

__all__ = ["make_backend"]


def make_backend(plan: DevicePlan, gpu_spec: Any = None) -> Any:
    """The backend object of a device plan (`CpuBackend` or `GpuBackend`)."""
    if plan.device == "gpu":
        from vidinfer.backends.gpu import GpuBackend

        return GpuBackend(plan, gpu_spec)
    from vidinfer.backends.cpu import CpuBackend

    return CpuBackend(plan)
