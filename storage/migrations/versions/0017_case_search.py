"""case search: the inbox's text search through an index instead of reading every case

SQLite: an FTS5 table with the trigram tokenizer over description and place, kept in step by triggers; the
inbox asks it with MATCH for three characters or more. PostgreSQL: pg_trgm GIN indexes, which serve the very
LIKE '%…%' the inbox sends. Shorter words (two Chinese characters) cannot be cut into trigrams and are still
found by reading the cases.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

SQLITE = [
    "CREATE VIRTUAL TABLE cases_search USING fts5(description, place_label, content='cases', content_rowid='id', "
    "tokenize='trigram')",
    "CREATE TRIGGER cases_search_insert AFTER INSERT ON cases BEGIN "
    "INSERT INTO cases_search (rowid, description, place_label) VALUES (new.id, new.description, new.place_label); "
    "END",
    "CREATE TRIGGER cases_search_delete AFTER DELETE ON cases BEGIN "
    "INSERT INTO cases_search (cases_search, rowid, description, place_label) "
    "VALUES ('delete', old.id, old.description, old.place_label); END",
    "CREATE TRIGGER cases_search_update AFTER UPDATE OF description, place_label ON cases BEGIN "
    "INSERT INTO cases_search (cases_search, rowid, description, place_label) "
    "VALUES ('delete', old.id, old.description, old.place_label); "
    "INSERT INTO cases_search (rowid, description, place_label) VALUES (new.id, new.description, new.place_label); "
    "END",
    "INSERT INTO cases_search (cases_search) VALUES ('rebuild')",
]
POSTGRESQL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_cases_description_trgm ON cases USING gin (description gin_trgm_ops)",
    "CREATE INDEX ix_cases_place_trgm ON cases USING gin (place_label gin_trgm_ops)",
]


def upgrade() -> None:
    for statement in SQLITE if op.get_bind().dialect.name == "sqlite" else POSTGRESQL:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("cases_search_insert", "cases_search_delete", "cases_search_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS cases_search")
    else:
        op.execute("DROP INDEX IF EXISTS ix_cases_place_trgm")
        op.execute("DROP INDEX IF EXISTS ix_cases_description_trgm")
