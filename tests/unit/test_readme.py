"""The README's copy of the permission table is the table in code."""
from pathlib import Path

from shared.permissions import markdown_table


def test_readme_permission_table_matches_the_code():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("<!-- permissions-table:start -->") + len("<!-- permissions-table:start -->")
    end = readme.index("<!-- permissions-table:end -->")
    assert readme[start:end].strip() == markdown_table()


def test_readme_configuration_reference_matches_config_yaml():
    from ops.configdoc import markdown as config_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("<!-- config-table:start -->") + len("<!-- config-table:start -->")
    end = readme.index("<!-- config-table:end -->")
    assert readme[start:end].strip() == config_table(), "run: python -m ops.configdoc"
