"""Describe the machine a benchmark ran on: CPU, cores, memory, TensorFlow build and versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess

PACKAGES = ("tensorflow", "keras", "mlflow", "hydra-core", "tensorflow-datasets", "numpy")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    """The vector instruction sets that decide matmul speed on a CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        return []
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
    return [flag for flag in wanted if flag in flags]


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        return round(kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        return None


def _git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}{' (dirty)' if dirty else ''}" if commit else None


def describe() -> dict:
    """Everything that makes two benchmark tables comparable or not. Imports TensorFlow."""
    import tensorflow as tf

    build = dict(tf.sysconfig.get_build_info())
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "tensorflow_build": {
            "cuda_build": bool(build.get("is_cuda_build")),
            "compiler": build.get("cpu_compiler"),
            # oneDNN is on by default for x86 builds; TF_ENABLE_ONEDNN_OPTS=0 turns it off.
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0",
        },
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_commit": _git_commit(),
    }


def one_line(machine: dict) -> str:
    tf_build = machine["tensorflow_build"]
    versions = machine["versions"]
    accel = ", ".join(machine["gpus"]) or "no GPU"
    return (
        f"{machine['cpu']} ({'/'.join(machine['cpu_flags'])}), {machine['usable_cores']} cores,"
        f" {machine['memory_gib']} GiB, {accel}; {machine['os']}, Python {machine['python']};"
        f" TensorFlow {versions['tensorflow']} ({'CUDA' if tf_build['cuda_build'] else 'CPU'} build,"
        f" oneDNN {'on' if tf_build['onednn'] else 'off'}), Keras {versions['keras']},"
        f" MLflow {versions['mlflow']}, Hydra {versions['hydra-core']}"
    )
