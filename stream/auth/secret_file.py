"""The TOML files that hold secrets' hashes (operators, sources): one table per entry, written
whole to a temporary file of mode 0600 and moved into place, so that a reader never sees half
of one and no one else can read it."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["read_entries", "write_entries"]


def read_entries(path: Path, table: str) -> dict[str, dict[str, Any]]:
    """``[table.<name>]`` entries of ``path`` ({} if there is no file); ValueError if ``table``
    is not a table, TOMLDecodeError if the file is not TOML."""
    if not path.exists():
        return {}
    with path.open("rb") as file:
        data = tomllib.load(file)
    entries = data.get(table, {})
    if not isinstance(entries, dict):
        raise ValueError(f"{path}: {table!r} must be a table of [{table}.<name>] entries")
    return {name: entry for name, entry in entries.items() if isinstance(entry, dict)}


def write_entries(path: Path, table: str, comment: str, entries: dict[str, dict[str, Any]]) -> None:
    lines = [f"# {comment}", ""]
    for name, values in sorted(entries.items()):
        lines.append(f"[{table}.{json.dumps(name)}]")
        lines.extend(
            f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in sorted(values.items())
        )
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover temporary file keeps its mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write("\n".join(lines))
    os.replace(temporary, path)
