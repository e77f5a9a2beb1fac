"""Counting the host's reads of device values, the calls that stall a GPU's launch queue.

A read is a scalar read (``aten._local_scalar_dense``, under ``item()``, ``float()``, ``bool()``
and ``add_(alpha=tensor)``) or a copy to host memory (``tolist``, ``numpy``, ``cpu``). On the CPU
they cost nothing, but they are the same calls that stall a GPU, so they can be counted there.
Used by the tests and by benchmarks/gpu_check.py.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode


class _ScalarReads(TorchDispatchMode):
    def __init__(self, counter: list[int]) -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.counter[0] += 1
        return func(*args, **(kwargs or {}))


class _HostCopies(TorchFunctionMode):
    def __init__(self, counter: list[int]) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in (torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu):
            self.counter[0] += 1
        return func(*args, **(kwargs or {}))


class DeviceReads:
    """Counts the host's reads of tensor values inside a ``with`` block."""

    def __init__(self) -> None:
        self.counter = [0]

    @property
    def count(self) -> int:
        return self.counter[0]

    def __enter__(self) -> DeviceReads:
        self._modes = (_HostCopies(self.counter), _ScalarReads(self.counter))
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
