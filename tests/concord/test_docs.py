"""The README's table reference is generated from the table specs: it must not drift."""

from pathlib import Path

from concord_pipelines.concord import settings
from concord_pipelines.concord.config import ConcordSettings
from concord_pipelines.concord.tabledoc import (
    BEGIN,
    END,
    SETTINGS_BEGIN,
    SETTINGS_END,
    render,
    render_settings,
)

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


def test_readme_settings_table_is_current_and_names_every_setting():
    text = README.read_text()
    section = text[text.index(SETTINGS_BEGIN) : text.index(SETTINGS_END) + len(SETTINGS_END)]
    assert section == render_settings(), "run: python -m concord_pipelines.concord.tabledoc --write"
    for name in ConcordSettings().get_resolvable_fields():
        assert f"`{name}`" in section, f"setting {name} is not in the README's settings table"
