"""Short reprs of the result dataclasses (arrays shown by shape and dtype, not values)."""

from __future__ import annotations


def compact_repr(obj) -> str:
    """``Name(field=value, ...)`` of a dataclass with each array shown as its shape and dtype
    (``array(1000x384, float32)``), not its values, and long strings/lists cut short."""
    import dataclasses

    def short(v):
        if hasattr(v, "shape") and hasattr(v, "dtype"):
            return f"array({'x'.join(map(str, v.shape)) or 'scalar'}, {v.dtype})"
        if isinstance(v, (list, tuple)) and len(v) > 6:
            return f"[{len(v)} items]"
        if isinstance(v, dict) and len(repr(v)) > 80:
            return f"{{{len(v)} keys}}"
        r = repr(v)
        return r if len(r) <= 80 else r[:77] + "..."

    fields = ", ".join(f"{f.name}={short(getattr(obj, f.name))}"
                       for f in dataclasses.fields(obj) if f.repr)
    return f"{type(obj).__name__}({fields})"
