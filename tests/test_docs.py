"""The README cannot rot: its settings table is generated, and must match the settings classes."""

from pathlib import Path

from vidstrata.config_docs import BEGIN, END, settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_settings_table_matches_the_settings_classes():
    text = README.read_text()
    block = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()
    assert block == settings_table(), "README settings table is stale: run `make docs`"


def test_every_setting_has_a_description():
    for row in settings_table().splitlines()[2:]:
        meaning = row.split(" | ")[2]
        assert meaning.strip(), f"undocumented setting: {row}"
