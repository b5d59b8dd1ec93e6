"""The generated code in src/loom/_proto is what scripts/gen_proto.sh produces from proto/."""

from __future__ import annotations

import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(HERE / "scripts" / "gen_proto.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    committed = HERE / "src" / "loom" / "_proto"
    names = sorted(p.name for p in tmp_path.iterdir())
    held = sorted(p.name for p in committed.iterdir() if p.is_file() and not p.name.endswith(".pyc"))
    assert names == held, names
    for name in names:
        assert (tmp_path / name).read_bytes() == (
            committed / name
        ).read_bytes(), f"src/loom/_proto/{name} is stale: run sdk-python/scripts/gen_proto.sh"
