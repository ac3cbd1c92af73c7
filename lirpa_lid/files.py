"""Files written atomically: under a temporary name in the target directory, then renamed, so a
failed or interrupted run never leaves a partial output file."""
from __future__ import annotations

import io
import os
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` under a temporary name in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_files_atomic(contents: Mapping[str | os.PathLike, bytes]) -> list[Path]:
    """Write several files as one: each is first written atomically under a hidden staging name beside its
    target, and only when all are complete are they renamed onto their targets (in the order given). A
    failure before that leaves every target as it was and no staged file behind."""
    staged: dict[Path, Path] = {}
    try:
        for target, data in contents.items():
            target = Path(target)
            staged[target] = write_bytes_atomic(target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.staged"),
                                                data)
        for target, staging in staged.items():
            os.replace(staging, target)
    finally:
        for staging in staged.values():
            staging.unlink(missing_ok=True)
    return list(staged)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 with :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_figure_atomic(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure (format from the extension) with :func:`write_bytes_atomic`."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    return write_bytes_atomic(path, buf.getvalue())
