"""Choosing the torch device: CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator

import torch

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Ask glibc to keep large freed blocks instead of returning them to the kernel.

    Every iteration allocates and frees the same few hundred MB of activations. By default glibc
    serves blocks over 32 MB with mmap and unmaps them on free, so each iteration page-faults and
    zeroes all of it again (about 10% of an iteration at 512 px here). Blocks up to 128 MiB (every
    activation of a 512 px render) now stay in the heap; larger ones (1024 px and up) are still
    mapped, because keeping them fragmented the heap: a 1024 px render grew to 4.5 GB with a
    1 GiB threshold and stays at 4.4 GB with this one. Returns False where the C library is not
    glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 27) and mallopt(_M_TRIM_THRESHOLD, 1 << 32))


def pick_device(name: str = "auto") -> torch.device:
    """Resolve ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` to an available device.

    Raises ValueError with a readable sentence when the named device is not there.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but there are only "
                             f"{torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but Apple's MPS is not available")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    return device


def available_memory(device: torch.device) -> int:
    """Bytes a render can use on ``device`` now: free GPU memory, or the memory the operating
    system says is available (Linux's MemAvailable; the free physical pages elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


#: ``fp32`` (the default) computes convolutions and matrix products in full fp32, stricter than
#: torch's own default (TF32 convolutions on CUDA). ``tf32`` uses TF32 for both on CUDA: 3.6x as
#: fast on an H200, but its fc-content gradient agreed with fp32's only to a cosine of 0.984
#: (style 0.998; benchmarks/gpu_check.py, 2026-11-27), under the 0.99 asked of a default.
PRECISIONS = ("fp32", "tf32")


def _set_fp32_precision(conv: str, matmul: str) -> tuple[str, str]:
    """Set cuDNN's and cuBLAS's fp32 mode (``ieee``, ``tf32`` or ``none``); return the old.

    torch 2.9's API; torch refuses a mix with the older ``allow_tf32`` flags, so only this one
    is used."""
    before = (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    torch.backends.cudnn.conv.fp32_precision = conv
    torch.backends.cuda.matmul.fp32_precision = matmul
    return before


@contextlib.contextmanager
def compute_settings(device: torch.device, precision: str = "fp32") -> Iterator[str]:
    """Run the enclosed render with its device's fastest settings; yields the precision used.

    On CUDA: cuDNN's autotuner (it times the convolution algorithms once per shape and keeps the
    fastest), and TF32 where ``precision`` asks for it. TF32 exists on CUDA only; ``tf32``
    elsewhere runs in fp32. The settings are process-wide in torch, so they are restored after.
    """
    use_tf32 = device.type == "cuda" and precision == "tf32"
    mode = "tf32" if use_tf32 else "ieee"
    benchmark = torch.backends.cudnn.benchmark
    before = _set_fp32_precision(mode, mode)
    torch.backends.cudnn.benchmark = benchmark or device.type == "cuda"
    try:
        yield "tf32" if use_tf32 else "fp32"
    finally:
        _set_fp32_precision(*before)
        torch.backends.cudnn.benchmark = benchmark


@contextlib.contextmanager
def full_fp32_matmul() -> Iterator[None]:
    """Matrix products in full fp32 inside, whatever the render's precision: TF32 would make the
    L-BFGS history's products, and so its direction, about 1e-3 wrong."""
    before = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision = before
