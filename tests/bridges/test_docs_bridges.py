"""docs/bridges.md's Characteristics tables are the ones the Features records generate."""

from pathlib import Path

from bridges import _docs

DOC = Path(__file__).parents[2] / "docs" / "bridges.md"


def test_characteristics_tables_match_the_features_records() -> None:
    text = DOC.read_text()
    assert _docs.update(text) == text, "run: python -m bridges._docs --write docs/bridges.md"
    for title in _docs.backends():
        assert f"#### {title}" in text


def test_every_registered_broker_has_its_table() -> None:
    from bus.abc import brokers

    titles = list(_docs.backends())
    assert titles[0] == _docs.LOOPBACK_TITLE
    assert titles[1:] == [plugin.title for plugin in brokers().values()]
    assert set(brokers()) == {"kafka", "kinesis", "pubsub", "rabbitmq", "redis"}
