"""Parsing a delimited table of decimal numbers (CSV/TSV bodies) on the CPU (Numba).

:func:`parse_table` reads ``n_rows`` lines of exactly ``width`` fields from an ASCII byte buffer
and converts each field to the float64 that Python's ``float()`` gives, **correctly rounded**:

- a field of at most 19 significant digits with a short exponent takes Clinger's fast path
  (mantissa ``w <= 2**53`` and ``|q| <= 22``: ``w * 10**q`` is one correctly rounded IEEE
  operation), is a dyadic value ``(w / 5**-q) * 2**q`` (an integer conversion), or, otherwise,
  a 64 x 128-bit product with a truncated table of ``5**q`` (the idea
  of Eisel and Lemire, Lemire 2021, "Number parsing at a gigabyte per second", Software: Practice
  and Experience 51(8), doi:10.1002/spe.2984, derived here in its truncated-table form): the true
  product lies in ``[P, P + 2**64)``, so the rounded result is known unless the bits below the
  rounding position are all ones (then the field is left to ``float()``);
- every other field (nan/inf, more digits, underscores, other whitespace, anything odd) is listed
  as *slow* (its byte range) for the caller to convert with ``float()``.

A line with a wrong number of fields stops the parse with a status (the caller then re-reads the
file its exact way, for the message).  Memory: the output plus two int64 per slow field.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
from numba import njit

_MIN_Q, _MAX_Q = -342, 308


@functools.lru_cache(maxsize=1)
def pow5_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(hi, lo, shift, exact)`` for q in [-342, 308]: ``hi * 2**64 + lo = floor(5**q * 2**shift)``
    in [2**127, 2**128) (exact when ``exact``)."""
    n = _MAX_Q - _MIN_Q + 1
    hi = np.empty(n, np.uint64)
    lo = np.empty(n, np.uint64)
    shift = np.empty(n, np.int64)
    exact = np.zeros(n, np.bool_)
    mask = (1 << 64) - 1
    for i, q in enumerate(range(_MIN_Q, _MAX_Q + 1)):
        if q >= 0:
            p = 5 ** q
            s = 128 - p.bit_length()
            t = p << s if s >= 0 else p >> -s
            exact[i] = s >= 0
        else:
            p = 5 ** -q
            s = 127 + p.bit_length()
            t = (1 << s) // p
        hi[i], lo[i], shift[i] = t >> 64, t & mask, s
    return hi, lo, shift, exact


_P10 = np.array([10.0 ** k for k in range(23)])
_P5 = np.array([5 ** k for k in range(28)], dtype=np.uint64)
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


@njit(cache=True, nogil=True)
def _mul64(a, b):  # pragma: no cover - compiled
    """The 128-bit product of two uint64: (high, low)."""
    a0, a1 = a & _M32, a >> _S32
    b0, b1 = b & _M32, b >> _S32
    p0, p1, p2, p3 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p0 >> _S32) + (p1 & _M32) + (p2 & _M32)
    low = (p0 & _M32) | (mid << _S32)
    high = p3 + (p1 >> _S32) + (p2 >> _S32) + (mid >> _S32)
    return high, low


@njit(cache=True, nogil=True)
def _to_double(w, q, neg, t_hi, t_lo, t_shift, t_exact, p10, p5):  # pragma: no cover - compiled
    """``±w * 10**q`` correctly rounded; ``(ok, value)``, ok False when undecided."""
    if w == 0:
        return True, -0.0 if neg else 0.0
    while q < 0 and w % np.uint64(10) == 0:          # 1.50 -> 15e-1: more fast-path hits
        w //= np.uint64(10)
        q += 1
    if w <= np.uint64(9007199254740992) and -22 <= q <= 22:   # Clinger: one IEEE operation
        v = float(w) * p10[q] if q >= 0 else float(w) / p10[-q]
        return True, -v if neg else v
    if -27 <= q < 0 and w % p5[-q] == 0:
        # a dyadic value (e.g. float32 data printed exactly): w 10**q = (w / 5**-q) 2**q, one
        # correctly rounded integer conversion and an exact scaling; the product below would
        # sit exactly on its undecidable boundary
        v = math.ldexp(float(w // p5[-q]), q)
        return True, -v if neg else v
    if q < -342 or q > 308:
        return False, 0.0
    lz = 0
    wn = w
    while (wn >> np.uint64(63)) == 0:
        wn <<= np.uint64(1)
        lz += 1
    i = q + 342
    a_hi, a_lo = _mul64(wn, t_hi[i])
    b_hi, b_lo = _mul64(wn, t_lo[i])
    mid = a_lo + b_hi
    top = a_hi + (np.uint64(1) if mid < a_lo else np.uint64(0))
    # X = top * 2**64 + mid = floor(w' T / 2**64), remainder b_lo; the true product w' 5**q 2**s
    # exceeds w' T by less than 2**64 (nothing when the table entry is exact)
    if top >> np.uint64(63):
        cut, e2 = np.uint64(11), 191 + q - t_shift[i] - lz
    else:
        cut, e2 = np.uint64(10), 190 + q - t_shift[i] - lz
    below = (np.uint64(1) << (cut - np.uint64(1))) - np.uint64(1)   # bits under the round bit
    round_bit = (top >> (cut - np.uint64(1))) & np.uint64(1)
    if not t_exact[i] and (top & below) == below and mid == np.uint64(0xFFFFFFFFFFFFFFFF):
        return False, 0.0            # a carry from the unknown remainder could reach the round bit
    m = top >> cut
    if t_exact[i]:
        sticky = (top & below) != 0 or mid != 0 or b_lo != 0
    else:
        sticky = True                # the true value is strictly above w' T
    if round_bit == 1 and (sticky or (m & np.uint64(1)) == 1):   # round half to even
        m += np.uint64(1)
        if m == np.uint64(1) << np.uint64(53):
            m >>= np.uint64(1)
            e2 += 1
    if e2 + 1023 < 1 or e2 + 1023 > 2046:
        return False, 0.0            # subnormal or overflow: float() decides
    v = math.ldexp(float(m), e2 - 52)
    return True, -v if neg else v


@njit(cache=True, nogil=True)
def _digits(buf, s, e, w, nd, q, frac):  # pragma: no cover - compiled
    """Consume the digits from ``s``: ``(s, w, nd, q, ok, any)``.  ``w`` keeps the first 19
    significant digits (``nd`` of them); ``q`` counts the decimal places (``frac``) or the
    dropped integer zeros; not ok when a nonzero digit would be dropped."""
    seen = False
    while s < e and 48 <= buf[s] <= 57:
        d = buf[s] - 48
        seen = True
        if nd < 19:
            if w != 0 or d != 0:
                w = w * np.uint64(10) + np.uint64(d)
                nd += 1
            if frac:
                q -= 1
        elif d != 0:
            return s, w, nd, q, False, seen
        elif not frac:
            q += 1
        s += 1
    return s, w, nd, q, True, seen


@njit(cache=True, nogil=True)
def _field(buf, s, e, t_hi, t_lo, t_shift, t_exact, p10, p5):  # pragma: no cover - compiled
    """Parse ``buf[s:e]`` as a plain decimal: ``(ok, value)``; not ok = leave it to float()."""
    while s < e and (buf[s] == 32 or buf[s] == 9):
        s += 1
    while e > s and (buf[e - 1] == 32 or buf[e - 1] == 9):
        e -= 1
    if s == e:
        return False, 0.0
    neg = False
    if buf[s] == 45 or buf[s] == 43:
        neg = buf[s] == 45
        s += 1
    s, w, nd, q, ok, digits = _digits(buf, s, e, np.uint64(0), 0, 0, False)
    if ok and s < e and buf[s] == 46:
        s, w, nd, q, ok, frac_digits = _digits(buf, s + 1, e, w, nd, q, True)
        digits = digits or frac_digits
    if not ok:
        return False, 0.0
    if not digits:
        return False, 0.0
    if s < e and (buf[s] == 101 or buf[s] == 69):
        s += 1
        eneg = False
        if s < e and (buf[s] == 45 or buf[s] == 43):
            eneg = buf[s] == 45
            s += 1
        if s == e or not (48 <= buf[s] <= 57):
            return False, 0.0
        ev = 0
        while s < e and 48 <= buf[s] <= 57:
            ev = ev * 10 + (buf[s] - 48)
            if ev > 100000:
                return False, 0.0
            s += 1
        q += -ev if eneg else ev
    if s != e:
        return False, 0.0
    return _to_double(w, q, neg, t_hi, t_lo, t_shift, t_exact, p10, p5)


@njit(cache=True, nogil=True)
def _parse(buf, n_rows, width, delim, t_hi, t_lo, t_shift, t_exact, p10, p5):  # pragma: no cover
    out = np.empty(n_rows * width, np.float64)
    slow = np.empty((16, 3), np.int64)
    n_slow = 0
    pos = 0
    n = buf.size
    for r in range(n_rows):
        for c in range(width):
            s = pos
            while pos < n and buf[pos] != delim and buf[pos] != 10:
                pos += 1
            ok, v = _field(buf, s, pos, t_hi, t_lo, t_shift, t_exact, p10, p5)
            k = r * width + c
            out[k] = v
            if not ok:
                if n_slow == slow.shape[0]:
                    grown = np.empty((2 * n_slow, 3), np.int64)
                    grown[:n_slow] = slow
                    slow = grown
                slow[n_slow, 0], slow[n_slow, 1], slow[n_slow, 2] = k, s, pos
                n_slow += 1
            if c < width - 1:
                if pos >= n or buf[pos] != delim:
                    return out, slow[:n_slow], r + 1      # too few fields on row r
            elif pos < n and buf[pos] != 10:
                return out, slow[:n_slow], r + 1          # too many fields on row r
            pos += 1
    if pos < n:
        return out, slow[:n_slow], n_rows + 1
    return out, slow[:n_slow], 0


def numba_ops() -> SimpleNamespace:
    """The ``("text", "numba")`` op set of the kernel registry."""
    return SimpleNamespace(parse_table=parse_table)


def parse_table(buf: np.ndarray, n_rows: int, width: int, delim: int
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """Parse ``n_rows`` lines of ``width`` ``delim``-separated fields of an ASCII uint8 buffer.

    Returns ``(values, slow, status)``: ``values`` (n_rows * width,) float64 in row order;
    ``slow`` (s, 3) int64 rows ``(index, start, stop)`` of the fields left to ``float()`` (their
    ``values`` entries are meaningless); ``status`` 0, or 1 + the row whose field count is wrong.
    """
    hi, lo, shift, exact = pow5_table()
    return _parse(buf, int(n_rows), int(width), int(delim), hi, lo, shift, exact, _P10, _P5)
