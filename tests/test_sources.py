"""fastcka.sources: the CSV/TSV parser (Numba) against the row loop and Python's float()."""

from __future__ import annotations

import random
from decimal import Decimal

import numpy as np
import pytest

from fastcka import sources
from fastcka.errors import InputError
from fastcka.kernels.text_cpu import parse_table


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equal float arrays (NaN, signed zeros included)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _tokens(seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    X = rng.standard_normal(4000) * 10.0 ** rng.integers(-30, 30, 4000)
    toks = [repr(float(v)) for v in X]                       # 17 significant digits
    toks += [repr(float(np.float32(v))) for v in X[:1000]]
    toks += [f"{v:.18e}" for v in X[:1000]] + [f"{v:.6f}" for v in X[:1000]]
    for _ in range(4000):                                     # up to 25 digits, any exponent
        nd = rnd.randint(1, 25)
        digs = "".join(rnd.choice("0123456789") for _ in range(nd))
        pt = rnd.randint(0, nd)
        toks.append(rnd.choice(["", "-", "+"]) + digs[:pt] + "." + digs[pt:]
                    + f"e{rnd.randint(-340, 320)}")
    for v in rng.standard_normal(500) * 10.0 ** rng.integers(-5, 20, 500):
        v = float(v)                                          # exact halfway points and neighbours
        half = (Decimal(v) + Decimal(float(np.nextafter(v, np.inf)))) / 2
        toks += [str(half), str(Decimal(v)), format(half, "f")]
    toks += ["0", "-0", "-0.000", "1.", ".5", "+.5e-3", "1e308", "1.7976931348623157e308",
             "2.2250738585072014e-308", "4.9e-324", "1e-400", "1e400", "9007199254740993",
             "18014398509481985", "123456789012345678901234567890", "0.30000000000000004",
             "0.1", " 12 ", "\t3.5", "nan", "-Infinity", "1_000", "0e99999", "1e100001"]
    return toks


def test_kernel_equals_float_on_every_field_it_takes():
    toks = _tokens()
    buf = np.frombuffer(",".join(toks).encode("ascii"), np.uint8)
    values, slow, status = parse_table(buf, 1, len(toks), ord(","))
    assert status == 0
    left = set(slow[:, 0].tolist())
    # the parser, not float(), decides the fields numbers are written as (all but a few
    # undecidable ones among the 6000 repr / %.18e fields; >19 digits go to float())
    assert len(left & set(range(6000))) < 10
    for i, t in enumerate(toks):
        if i not in left:
            assert values[i].tobytes() == np.float64(float(t)).tobytes(), t
    for i, s, e in slow.tolist():                   # what it leaves is exactly the field's text
        assert ",".join(toks).encode()[s:e].decode() == toks[i]
    for bad in ("1e", "e5", ".", "", "--1", "1.2.3", "0x10", "1 2"):
        v, sl, st = parse_table(np.frombuffer(f"1,{bad}".encode(), np.uint8), 1, 2, ord(","))
        assert st == 0 and sl[:, 0].tolist() == [1]
    for text, status in (("1,2\n3", 2), ("1,2,3\n4,5", 1), ("1,2\n3,4\n5,6", 3)):
        assert parse_table(np.frombuffer(text.encode(), np.uint8), 2, 2, ord(","))[2] == status


def _tables(tmp_path, rng):
    X = rng.standard_normal((40, 6)).tolist()
    rows17 = [",".join(repr(float(v)) for v in r) for r in X]
    ids = [f"img {i}.jpg" for i in range(40)]
    yield "plain.csv", "\n".join(rows17) + "\n"
    yield "header_id_middle.csv", ("a,b,ID,c,d,e,f\n" + "\n".join(
        ",".join([*r.split(",")[:2], ids[i], *r.split(",")[2:]]) for i, r in enumerate(rows17)))
    yield "fmt.tsv", "\ufeffx\ty\n" + "\n".join(f"{a:.6f}\t {b:.18e} " for a, b, *_ in X)
    yield "odd_fields.csv", "\n".join(f"{a!r},nan,-0,1_0,+.5,{b:.3g}" for a, b, *_ in X) + "\n,,\n"
    yield "crlf.csv", "\r\n".join(rows17)                       # row loop (carriage returns)
    yield "quoted.csv", "\n".join(f'"{a!r}",{b!r}' for a, b, *_ in X)   # row loop (quotes)
    yield "one_col.csv", "\n".join(repr(r[0]) for r in X)


def test_fast_and_row_loop_give_identical_tables(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    for name, text in _tables(tmp_path, rng):
        p = tmp_path / name
        p.write_text(text, encoding="utf-8", newline="")
        want = sources.read_source(p, engine="python")
        got = sources.read_source(p, engine="fast")
        assert _same(got[0], want[0]) and got[1:] == want[1:], name
    # the parser really reads the plain files: the row loop is not needed for them
    monkeypatch.setattr(sources, "_text_table_rows", lambda src: pytest.fail(f"row loop: {src}"))
    for name in ("plain.csv", "header_id_middle.csv", "fmt.tsv", "odd_fields.csv", "one_col.csv"):
        sources.read_source(tmp_path / name, engine="fast")
    # and small files go to the row loop under engine="auto" (no Numba import, no compile)
    with pytest.raises(pytest.fail.Exception, match="row loop"):
        sources.read_source(tmp_path / "plain.csv")


@pytest.mark.parametrize("text, needle", [
    ("1,2\n3\n", "line 2: 1 fields, expected 2"),
    ("a,b\n1,2\n3,x\n", "line 3, column b: 'x' is not a number"),
    ("1,2\n\n3,4\n", "line 2: 0 fields, expected 2"),
    ("1,2\n3, 4 5\n", "line 2, column 2: ' 4 5' is not a number"),
    ("1,2\n3,0x10\n", "'0x10' is not a number"),
    ("a,b\n", "has a header but no data rows"),
    ("\n\n", "is empty"),
    ("id\nq1\nq2\n", "has no numeric columns"),
    ("1,2,3\n4,5\n", "line 2: 2 fields, expected 3"),
])
def test_same_messages_from_both_paths(tmp_path, text, needle):
    p = tmp_path / "t.csv"
    p.write_text(text)
    msgs = []
    for engine in ("python", "fast"):
        with pytest.raises(InputError) as ei:
            sources.read_source(p, engine=engine)
        msgs.append(str(ei.value))
    assert msgs[0] == msgs[1] and needle in msgs[0]
