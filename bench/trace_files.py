"""Count the fastcka files one CLI request runs through (docs/architecture.md, "Files crossed").

Usage::

    python bench/trace_files.py match SRC TGT [options]   (the command line without 'fastcka')

A profile hook (sys.setprofile, and threading.setprofile for worker threads) is set before the
CLI's entry module is imported; it records the source file of every Python frame entered and
keeps the files of the package (fastcka/, fastcka/cli, fastcka/kernels).  Three counts:
- executed: any frame of the file ran (module bodies run by imports included);
- called:   at least one of its functions ran (not only its module body);
- run time: at least one of its functions ran outside any import (no module body on the stack
            between it and this script): the files the request itself flows through.
"""
import importlib.util
import os
import sys
import threading

repo = os.path.dirname(os.path.dirname(os.path.realpath(importlib.util.find_spec("fastcka").origin)))
here = os.path.realpath(__file__)
executed, called, runtime = set(), set(), set()


def _rel(f):
    f = os.path.realpath(f)
    if f.startswith(repo + os.sep) and f.endswith(".py"):
        rel = os.path.relpath(f, repo)
        if rel.split(os.sep)[0] in ("fastcka", "cli", "kernels"):
            return rel
    return None


def prof(frame, event, arg):
    if event != "call":
        return
    rel = _rel(frame.f_code.co_filename)
    if rel is None:
        return
    executed.add(rel)
    if frame.f_code.co_name == "<module>":
        return
    called.add(rel)
    f = frame.f_back
    while f is not None and os.path.realpath(f.f_code.co_filename) != here:
        if f.f_code.co_name == "<module>":
            return
        f = f.f_back
    runtime.add(rel)


sys.setprofile(prof)
threading.setprofile(prof)
code = 0
try:
    from fastcka.cli.main import main
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
sys.setprofile(None)
print("exit", code, file=sys.stderr)  # the command's own output went to stdout
for f in sorted(executed):
    kind = "run time" if f in runtime else ("called  " if f in called else "import  ")
    print(f"  {kind} {f}", file=sys.stderr)
print(f"files executed (imports included): {len(executed)}; with a function called: "
      f"{len(called)}; at run time: {len(runtime)}", file=sys.stderr)
