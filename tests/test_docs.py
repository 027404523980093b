"""The docs match the code: the README's optimizer table is the rules' own (fastopt.rules.table),
and docs/semantics.md states every rule of the catalogue."""

from pathlib import Path

import fastopt.rules

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- rules -->"


def test_readme_table_is_the_rules():
    readme = (ROOT / "README.md").read_text()
    assert readme.count(MARK) == 2, f"README.md: expected the table between two {MARK} lines"
    table = readme.split(MARK)[1].strip()
    assert table == fastopt.rules.table(), (
        "README.md's optimizer table is out of date: paste in the output of\n"
        "  python -c 'import fastopt.rules; print(fastopt.rules.table())'")


def test_every_rule_is_in_the_semantics():
    semantics = (ROOT / "docs" / "semantics.md").read_text()
    headings = [line for line in semantics.splitlines() if line.startswith("## ")]
    for name in fastopt.rules.RULES:
        assert any(name in heading for heading in headings), f"docs/semantics.md lacks {name}"


def test_readme_gallery_tables_are_the_committed_outputs():
    readme = (ROOT / "README.md").read_text()
    for name in ("landscapes.md", "digits.md"):
        table = (ROOT / "docs" / "gallery" / name).read_text().split("\n\n", 1)[1].strip()
        assert table in readme, (
            f"README.md's gallery lacks docs/gallery/{name}'s table: paste it in after "
            "regenerating the gallery (fastopt demo all --out docs/gallery)")
