"""Op by op against llama.cpp's own rpc-server: `examples/compare_ops.rs` sends the same random inputs
(every weight type's MUL_MAT at mat-vec, tiled and prompt batch sizes, norms, ROPE, GLU, SOFT_MAX,
FLASH_ATTN_EXT in Gemma's layouts, GET_ROWS, CPY) to the reference and to the server under test, and
every case must come back bit-identical."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e_common as common  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
COMPARE = REPO / "target" / "release" / "examples" / "compare_ops"


def test_ops_bit_identical_to_reference(server, workdir):
    if server.spec == "reference":
        pytest.skip("the server under test is the reference itself")
    if not COMPARE.exists():
        pytest.fail(f"{COMPARE} is missing (cargo build --release --example compare_ops)")
    ref = common.Server("reference", "CPU", common.server_threads(), workdir / "ops-reference.log")
    with ref:
        run = subprocess.run([str(COMPARE), ref.endpoint, server.endpoint], capture_output=True,
                             text=True, timeout=600)
    assert run.returncode == 0, f"compare_ops failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    cases, different = 0, []
    for line in run.stdout.splitlines()[1:]:
        parts = line.split()
        if not parts:
            continue
        cases += 1
        try:
            rel, maxd = float(parts[-2]), float(parts[-1])
        except ValueError:
            different.append(line)  # "failed: ..." on either side
            continue
        if rel != 0.0 or maxd != 0.0:
            different.append(line)
    line = f"{cases - len(different)}/{cases} op cases bit-identical to llama.cpp's rpc-server"
    print(f"\n[e2e] ops: {line}")
    common.METRICS[f"ops ({server.spec} -d {server.device})"] = line
    assert cases >= 50, f"only {cases} cases ran:\n{run.stdout}"
    assert not different, "cases that differ:\n" + "\n".join(different)
