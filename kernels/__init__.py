"""Compute kernels (installed as ``fastcka.kernels``).

- ``*_cpu.py``: Numba CPU kernels (parallel), with NumPy fallbacks.
- ``*_cuda.py``: Numba CUDA kernels, written so that ``NUMBA_ENABLE_CUDASIM=1`` runs them on the
  CPU (tests use the simulator on small sizes; a real GPU runs them natively).
- ``*_cupy.py``: CuPy raw/elementwise/reduction kernels for the GPU path.

Kernels import nothing from the library.  Nothing heavy is imported here.
"""
