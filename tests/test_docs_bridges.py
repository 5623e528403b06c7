"""docs/bridges.md's Characteristics tables are the ones the Features records generate."""

from pathlib import Path

from bridges import _docs

DOC = Path(__file__).parent.parent / "docs" / "bridges.md"


def test_characteristics_tables_match_the_features_records() -> None:
    text = DOC.read_text()
    assert _docs.update(text) == text, "run: python -m bridges._docs --write docs/bridges.md"
    for title in _docs.BACKENDS:
        assert f"#### {title}" in text
