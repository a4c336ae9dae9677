"""List the functions longer than a limit (docs/architecture.md: no function over ~80 lines
outside the kernels).

Usage::

    python bench/function_lengths.py [--limit 80] [PATH ...]   (default: fastcka cli bench)

Each line: the body length with its docstring, without it, and ``file:line name``; a function
is listed when either length is over the limit.  Nested functions count on their own and inside
the function that holds them.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def lengths(path: Path):
    """``(with docstring, without docstring, name, line)`` of every function in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        full = node.end_lineno - body[0].lineno + 1
        first = body[0]
        has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                   and isinstance(first.value.value, str))
        bare = (node.end_lineno - body[1].lineno + 1 if len(body) > 1 else 0) if has_doc else full
        yield full, bare, node.name, node.lineno


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=80)
    ap.add_argument("paths", nargs="*", default=["fastcka", "cli", "bench"])
    args = ap.parse_args(argv)
    rows = []
    for root in args.paths:
        files = [Path(root)] if root.endswith(".py") else sorted(Path(root).rglob("*.py"))
        for f in files:
            rows += [(full, bare, f"{f}:{line} {name}") for full, bare, name, line in lengths(f)
                     if full > args.limit or bare > args.limit]
    for full, bare, where in sorted(rows, reverse=True):
        print(f"{full:4d} {bare:4d}  {where}")
    print(f"{len(rows)} function(s) over {args.limit} lines (with or without the docstring)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
