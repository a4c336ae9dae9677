"""What :func:`fastcka.classify` writes (re-exported there): the confusion matrix as text and the
result folder of ``fastcka classify -o DIR`` (summary, per class, predictions, confusions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    from .classify import ClassifyResult, MethodResult


def _slug(name: str) -> str:
    return name.replace("/", "-")


def confusion_text(m: MethodResult, classes: Sequence[str], width: int = 7) -> str:
    """The confusion matrix as aligned text (rows: true class, columns: predicted)."""
    short = [c[:width] for c in classes]
    lw = min(max(len(c) for c in classes), 14)
    head = " " * (lw + 1) + "".join(f"{c:>{width + 1}}" for c in short) + f"{'acc':>{width + 1}}"
    lines = [head]
    for i, c in enumerate(classes):
        acc = m.per_class[i]
        lines.append(f"{c[:lw]:<{lw}} " + "".join(f"{v:>{width + 1}d}" for v in m.confusion[i])
                     + (f"{acc:>{width + 1}.3f}" if acc == acc else f"{'-':>{width + 1}}"))
    return "\n".join(lines)


def _confusion_plot(m: MethodResult, classes: Sequence[str], path: Any, fmt: str) -> None:
    from .plots import confusion_matrix, save

    fig = confusion_matrix(m.confusion, classes, title=f"{m.name}: top-1 {m.top1:.3f}" + (
        f", balanced {m.accuracy:.3f}" if m.balanced else ""))
    save(fig, path, fmt)


def write_classification(result: ClassifyResult, out_dir: Any, *,
                         ids: Sequence[str] | None = None, plot_format: str = "png") -> list[str]:
    """Write the result into the folder ``out_dir``; returns the file names written.

    ``summary.csv`` (one row per method), ``per_class.csv`` (method, class, n, accuracy),
    ``predictions.csv`` (each scored image: id, true class, one column per method),
    ``confusion_<method>.csv`` (rows: true class, columns: predicted; the wide layout
    ``fastcka report`` reads) and its plot ``confusion_<method>.<plot_format>``.  A folder
    that does not exist yet is built under a temporary name and renamed when complete; files
    in an existing folder are each replaced atomically.
    """
    import csv
    import io
    import os
    import shutil

    from ._io import atomic_write_text, real_target, temp_name
    from ._table import write_rows
    from .plots import check_format

    fmt = check_format(plot_format)

    final = real_target(out_dir)
    if final.exists() and not final.is_dir():
        raise InputError(f"output {out_dir} exists and is not a folder")
    if not final.parent.is_dir():
        raise InputError(f"output folder's parent does not exist: {final.parent}")
    fresh = not final.exists()
    target = temp_name(final) if fresh else final
    if fresh:
        target.mkdir()
    files: list[str] = []
    try:
        write_rows(str(target / "summary.csv"), result.summary())
        write_rows(str(target / "per_class.csv"), result.per_class_rows())
        files += ["summary.csv", "per_class.csv"]
        qids = ([str(ids[i]) for i in result.query_rows] if ids is not None
                else [str(int(i)) for i in result.query_rows])
        preds = [{"id": qids[k], "class": result.classes[int(result.labels[k])],
                  **{m.name: result.classes[int(m.predictions[k])] for m in result.methods}}
                 for k in range(result.n_queries)]
        write_rows(str(target / "predictions.csv"), preds)
        files.append("predictions.csv")
        for m in result.methods:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["true \\ predicted", *result.classes])
            for c, row in zip(result.classes, m.confusion.tolist(), strict=True):
                w.writerow([c, *row])
            name = f"confusion_{_slug(m.name)}"
            atomic_write_text(target / f"{name}.csv", buf.getvalue())
            _confusion_plot(m, result.classes, target / f"{name}.{fmt}", fmt)
            files += [f"{name}.csv", f"{name}.{fmt}"]
        if fresh:
            os.rename(target, final)
    except BaseException:
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return files
