"""The README's library section runs as written and prints what the README shows (issue 16
item 7): its stores come from the README's own `fastcka import` lines, on the shared Flickr8k
reference embeddings; a FutureWarning is an error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block of ``text``, in order."""
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r"^```(\w*)\n(.*?)^```$", text, flags=re.S | re.M)]


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_readme_library_section_runs_as_written(shared_data, tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (lang, shell), = [b for b in _blocks(_section(readme, "The batch tool")) if b[0] == "sh"]
    imports = [ln for ln in shell.splitlines() if ln.startswith("fastcka import ")]
    assert len(imports) == 2 and {"-o img.h5", "-o txt.h5"} <= {ln[ln.index("-o "):]
                                                                 for ln in imports}
    library = _blocks(_section(readme, "The library"))
    (code_lang, code), (out_lang, shown) = library[0], library[1]
    assert (code_lang, out_lang) == ("python", "text")
    assert "fastcka.align(" in code or "fastcka.read_store(" in code  # data from the stores
    env = {k: v for k, v in os.environ.items() if k != "FASTCKA_DEBUG"}
    # the README's own lines; `fastcka` is this interpreter's, E the shared data here
    script = (f"set -euo pipefail\nfastcka() {{ {sys.executable} -m fastcka \"$@\"; }}\n"
              f"E={shared_data / 'embeddings'}\n" + "\n".join(f"{ln} -q" for ln in imports))
    p = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Warning" not in p.stderr, p.stderr
    assert p.stdout.splitlines() == shown.splitlines(), (p.stdout, shown)
