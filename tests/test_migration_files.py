"""The migration files: a compact header that states the chain once (in `revision`,
`down_revision` and, where needed, `depends_on`), in every migration and in the template
new ones come from."""

from __future__ import annotations

import ast
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from infra.db.migrate import MIGRATIONS

# What the header used to repeat: the chain in the docstring, and typing alembic never reads.
REPEATED = ("Revision ID:", "Revises:", "Create Date:", "Sequence[str]", "branch_labels = None")


def _config(location: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(location))
    return config


def test_every_migration_states_its_chain_once() -> None:
    files = sorted((MIGRATIONS / "versions").glob("*.py"))
    assert files
    for path in files:
        source = path.read_text()
        for text in REPEATED:
            assert text not in source, f"{path.name} repeats {text!r}"
        names = {
            target.id
            for node in ast.parse(source).body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert {"revision", "down_revision"} <= names, path.name


def test_the_chain_is_one_history_with_the_tenant_wall_after_every_table() -> None:
    scripts = ScriptDirectory.from_config(_config(MIGRATIONS))
    revisions = {script.revision: script for script in scripts.walk_revisions()}
    assert revisions["0001"].down_revision is None
    assert revisions["0930_tenant_wall"].down_revision == "0920_owner_user"
    # The wall is a head, or what follows it (indexes, and tables that enable the wall
    # themselves) descends from it.
    assert any(
        head == "0930_tenant_wall"
        or "0930_tenant_wall" in {s.revision for s in scripts.iterate_revisions(head, "base")}
        for head in scripts.get_heads()
    )


def test_a_new_migration_comes_out_compact(tmp_path: Path) -> None:
    location = tmp_path / "migrations"
    (location / "versions").mkdir(parents=True)
    (location / "script.py.mako").write_text((MIGRATIONS / "script.py.mako").read_text())
    (location / "env.py").write_text("")
    config = _config(location)
    command.revision(config, message="Add a table", rev_id="0001_first")
    command.revision(config, message="Then another", rev_id="0002_next", depends_on="0001_first")
    first, second = sorted((location / "versions").glob("*.py"))
    for path in (first, second):
        source = path.read_text()
        for text in REPEATED:
            assert text not in source, f"the template writes {text!r}"
    assert 'revision = "0002_next"' in second.read_text().replace("'", '"')
    assert "depends_on" not in first.read_text()
    scripts = ScriptDirectory.from_config(config)
    assert scripts.get_revision("0002_next").down_revision == "0001_first"
    assert scripts.get_revision("0002_next").dependencies == "0001_first"
