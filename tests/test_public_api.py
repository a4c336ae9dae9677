"""The lazy public names of ``fastcka`` resolve, and stay callable after submodule imports."""

import importlib
import subprocess
import sys

import numpy as np

import fastcka


def test_every_lazy_name_resolves():
    import types

    for name, module in fastcka._LAZY.items():
        mod = importlib.import_module(module)
        got = getattr(fastcka, name)
        if isinstance(got, types.ModuleType):  # fastcka.cka / fastcka.local_cka once imported
            assert got is mod and callable(got), name
        else:
            assert got is getattr(mod, name), name


def test_function_named_like_its_module_stays_callable():
    # `import fastcka.cka` rebinds the package attribute to the module: it must still compute CKA
    code = ("import numpy as np, fastcka.cka, fastcka.local_cka, fastcka;"
            "r = np.random.default_rng(0); X = r.random((30, 4)); Y = X @ r.random((4, 3));"
            "print(fastcka.cka(X, Y) == fastcka.cka.cka(X, Y),"
            " fastcka.local_cka(X[:5], Y[:5], X[5:], Y[5:]).shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "(5,", "5)"]


def test_cka_function_value():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 5))
    Xc = X - X.mean(0)
    # CKA of a representation with itself is 1; with an orthogonal rotation too
    Q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    assert abs(fastcka.cka(X, X) - 1.0) < 1e-12
    assert abs(fastcka.cka(X, Xc @ Q) - 1.0) < 1e-12
