"""The README's table reference is generated from the table specs: it must not drift."""

from pathlib import Path

from concord_pipelines.concord import settings
from concord_pipelines.concord.tabledoc import BEGIN, END, render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_reference_is_current():
    text = README.read_text()
    section = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert section == render(), "run: python -m concord_pipelines.concord.tabledoc --write"


def test_readme_documents_every_table_and_resource():
    text = README.read_text()
    for table in settings.ALL_TABLE_SPECS:
        assert f"#### `{table}`" in text
    for resource in settings.RESOURCE_TABLES:
        assert f"`{resource}`" in text
