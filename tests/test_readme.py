"""The README's contracts table is generated from streamsam.contracts; keep the two in step."""

from pathlib import Path

from streamsam.contracts import DEFAULT_DIMS, markdown_table


def test_readme_contract_table_matches_the_contracts_module():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert markdown_table(DEFAULT_DIMS) in readme, "README's table is stale: regenerate it with `streamsam contracts`"
