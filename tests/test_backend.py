"""Backend selection rules, GPU kill switch and errors, host round trips."""

from __future__ import annotations

import numpy as np
import pytest

from fastcka import backend as bk
from fastcka.errors import GPUUnavailableError, InputError


@pytest.fixture
def gpu_disabled(monkeypatch):
    """FASTCKA_DISABLE_GPU=1 with a fresh probe; the probe is reset again afterwards."""
    monkeypatch.setenv("FASTCKA_DISABLE_GPU", "1")
    bk.reset_gpu_probe()
    yield
    monkeypatch.delenv("FASTCKA_DISABLE_GPU")
    bk.reset_gpu_probe()


def test_cpu_is_numpy():
    b = bk.get_backend(np.ones(3), device="cpu")
    assert b.xp is np and not b.is_gpu and b.device == "cpu" and b.name == "numpy"


def test_auto_follows_gpu_availability():
    b = bk.get_backend(np.ones(3))
    assert b.is_gpu == bk.gpu_available()
    assert bk.usable_devices() == (["cpu", "gpu"] if bk.gpu_available() else ["cpu"])


@pytest.mark.parametrize("device", ["CPU", "Cpu", "auto", "AUTO"])
def test_device_case_insensitive(device):
    assert bk.check_device(device) == device.lower()


@pytest.mark.parametrize("device", ["tpu", "cuda", "", "gpu0", None, 0])
def test_bad_device_string(device):
    with pytest.raises(InputError) as ei:
        bk.get_backend(device=device)
    msg = str(ei.value)
    assert "\n" not in msg and "device must be one of" in msg and repr(device) in msg


def test_kill_switch_disables_gpu(gpu_disabled):
    assert not bk.gpu_available()
    assert "FASTCKA_DISABLE_GPU" in bk.gpu_unavailable_reason()
    assert bk.get_backend(np.ones(2)).xp is np  # auto falls back to the CPU
    assert bk.usable_devices() == ["cpu"]
    with pytest.raises(GPUUnavailableError) as ei:
        bk.get_backend(device="gpu")
    msg = str(ei.value)
    assert "\n" not in msg and "device='gpu'" in msg and "FASTCKA_DISABLE_GPU" in msg
    with pytest.raises(GPUUnavailableError):
        bk.require_gpu()


@pytest.mark.parametrize("value, disabled", [("1", True), ("true", True), ("YES", True),
                                             ("0", False), ("", False), ("no", False)])
def test_kill_switch_values(monkeypatch, value, disabled):
    monkeypatch.setenv("FASTCKA_DISABLE_GPU", value)
    bk.reset_gpu_probe()
    try:
        reason = bk.gpu_unavailable_reason()
        assert ("FASTCKA_DISABLE_GPU" in reason) == disabled
    finally:
        monkeypatch.delenv("FASTCKA_DISABLE_GPU")
        bk.reset_gpu_probe()


def test_gpu_request_without_gpu_names_reason():
    if bk.gpu_available():
        pytest.skip("a GPU is usable here; the error path is covered by the kill-switch test")
    reason = bk.gpu_unavailable_reason()
    assert reason
    with pytest.raises(GPUUnavailableError) as ei:
        bk.get_backend(np.ones(2), device="gpu")
    assert reason in str(ei.value) and "\n" not in str(ei.value)
    assert ei.value.exit_code == 2


def test_numba_kill_switch(monkeypatch):
    monkeypatch.delenv("FASTCKA_DISABLE_NUMBA", raising=False)
    assert bk.numba_enabled()
    monkeypatch.setenv("FASTCKA_DISABLE_NUMBA", "1")
    assert not bk.numba_enabled()


def test_backend_fixture_round_trip(backend):
    a = np.arange(12, dtype=np.float64).reshape(3, 4)
    d = backend.asarray(a, dtype=np.float32)
    assert isinstance(d, backend.xp.ndarray) and d.dtype == np.float32
    s = backend.xp.sum(d * 2)
    backend.synchronize()
    assert backend.scalar(s) == float((a * 2).sum())
    h = backend.to_host(d)
    assert isinstance(h, np.ndarray) and np.array_equal(h, a.astype(np.float32))


def test_is_cupy_array_without_cupy():
    assert not bk.is_cupy_array(np.ones(2)) and not bk.is_cupy_array([1, 2])


@pytest.mark.gpu
def test_cupy_inputs_select_gpu_and_cpu_copies_back():
    import cupy

    x = cupy.arange(6, dtype=cupy.float32)
    assert bk.get_backend(np.ones(2), x).is_gpu
    cpu = bk.get_backend(x, device="cpu")
    h = cpu.asarray(x)
    assert isinstance(h, np.ndarray) and np.array_equal(h, np.arange(6, dtype=np.float32))
    assert np.array_equal(cpu.to_host(x), h)


@pytest.mark.gpu
def test_cupy_input_with_kill_switch_raises(gpu_disabled):
    import cupy

    with pytest.raises(GPUUnavailableError):
        bk.get_backend(cupy.ones(2))
