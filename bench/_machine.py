"""Machine description shared by the benchmark scripts (they print it beside every table)."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines(device: str, libraries: str = "") -> list[str]:
    """Markdown bullets describing the run: CPU, Python/NumPy (+ ``libraries``), BLAS, GPU, load.

    ``libraries``: further versions for the line after NumPy, e.g. ``", SciPy 1.17.1"``.
    """
    import numpy as np

    lines = [f"- CPU: {cpu_name()}, {os.cpu_count()} logical cores",
             f"- Python {platform.python_version()}, NumPy {np.__version__}{libraries}"]
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        lines.append(f"- BLAS: {cfg.get('name')} {cfg.get('version')}")
    except Exception:  # pragma: no cover - older NumPy
        pass
    if device == "gpu":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        lines.append(f"- GPU: {props['name'].decode()}, CuPy {cupy.__version__}")
    try:
        lines.append(f"- load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    except OSError:  # pragma: no cover
        pass
    return lines
