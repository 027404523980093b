"""``fastopt bench --storage``: every storage mode's row, with the bytes it moves and its own
roofline, beside float32 Adam in the same rounds."""

import json

import pytest

pytest.importorskip("ml_dtypes")
from fastopt.bench import cli  # noqa: E402
from fastopt.bench.storage_modes import MODES  # noqa: E402

# Bytes per element of an Adam step (read + written), by hand: parameter 2x, gradient once,
# two moments 2x each, Kahan's compensation 2x, an 8-bit moment's float32 scale per 256.
EXPECTED_BYTES = {
    "float32": 4 * 3 + 4 * 4,
    "bf16 all, stochastic": 2 * 3 + 2 * 4,
    "bf16 all, nearest": 2 * 3 + 2 * 4,
    "bf16 all, kahan": 2 * 3 + 2 * 4 + 2 * 2,
    "f32 + bf16 moments": 4 * 3 + 2 * 4,
    "f32 + 8-bit moments": 4 * 3 + 4 * (1 + 4 / 256),
    "bf16 + 8-bit moments": 2 * 3 + 4 * (1 + 4 / 256),
}


def test_storage_rows(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main(["--optimizers", "Adam", "--sizes", "5000", "--rounds", "1", "--budget",
                     "0.001", "--no-model", "--no-torch-model", "--storage",
                     "--json", str(out)]) == 0
    assert "own roofline" in capsys.readouterr().out
    rows = json.loads(out.read_text())["storage"]
    assert [r["mode"] for r in rows] == [m.name for m in MODES] == list(EXPECTED_BYTES)
    for r in rows:
        assert r["size"] == 5000
        assert r["bytes_per_element"] == pytest.approx(EXPECTED_BYTES[r["mode"]])
        assert r["seconds"] > 0 and r["roofline_fraction"] > 0 and r["speedup_float32"] > 0
        assert r["gb_per_s"] == pytest.approx(5000 * r["bytes_per_element"] / r["seconds"] / 1e9)
    assert rows[0]["speedup_float32"] == 1.0  # float32 against itself, round by round
