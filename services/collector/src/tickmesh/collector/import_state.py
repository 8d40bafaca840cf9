"""The resume state of `tickmesh import`: per file, the last acknowledged trade id and whether it is done."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def file_key(path: Path, member: str | None = None) -> str:
    """A file's (or zip member's) key in the resume state."""
    resolved = str(path.resolve())
    return resolved if member is None else f"{resolved}::{member}"


@dataclass(slots=True)
class ImportState:
    """Per-file last acknowledged trade id and completion, kept in a small JSON file."""

    path: Path
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ImportState:
        """Read the state file (empty state when it does not exist)."""
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(path, dict(data.get("files", {})))

    def last_id(self, key: str) -> int | None:
        """The last acknowledged trade id of a file, if any."""
        entry = self.files.get(key)
        return None if entry is None or entry.get("last_id") is None else int(entry["last_id"])

    def done(self, key: str) -> bool:
        """Whether every trade of the file was acknowledged."""
        return bool(self.files.get(key, {}).get("done", False))

    def record(self, key: str, last_id: int | None, done: bool = False) -> None:
        """Remember a file's progress (in memory; `save` writes it)."""
        self.files[key] = {"last_id": last_id, "done": done}

    def save(self) -> None:
        """Write the state atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"files": self.files}, indent=1), encoding="utf-8")
        os.replace(temporary, self.path)


def default_state_path() -> Path:
    """The state file under $TICKMESH_STATE_DIR (default .state)."""
    return Path(os.environ.get("TICKMESH_STATE_DIR", ".state")) / "import-state.json"
