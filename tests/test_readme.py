"""The README's Python examples run as written and their own assertions hold."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example{i}" for i in range(len(EXAMPLES))])
def test_readme_example_runs(source, capsys):
    if "import torch" in source:
        pytest.importorskip("torch")  # the PyTorch section's example; torch is optional
    exec(compile(source, str(README), "exec"), {"__name__": "__readme__"})
