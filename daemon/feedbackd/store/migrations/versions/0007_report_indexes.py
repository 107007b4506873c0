"""The report's indexes, from measuring at a million cases: the satisfaction score (SQLite), tag lists (PostgreSQL).

Revision 0007, after 0006.  0006's partial index ``ix_case_satisfaction`` (created_at, for the cases
with a score) found the year's answers, but the mean then read each answering case's row for its
score: 0.45 s of the year-long report at 1,000,000 cases (bench/bench_scale.py, 300,000 answers).
With the score's expression in the index SQLite takes it from there (its deferred seek to the row
never happens): 0.05 s.  On PostgreSQL, ``ix_case_tags`` carries each case's tag list beside
created_at (INCLUDE: json has no btree order), so the tags are counted by an index-only scan instead
of reading the whole table (0.7-1.0 s to 0.35-0.55 s on the loaded bench machine).
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels = None
depends_on = None

SCORE = "json_extract(satisfaction, '$.score')"
NEW = f"(created_at, {SCORE}) WHERE {SCORE} IS NOT NULL"
OLD = f"(created_at) WHERE {SCORE} IS NOT NULL"


PG_TAGS = '(created_at) INCLUDE (tags)'


def upgrade() -> None:
    _replace(NEW)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f'CREATE INDEX ix_case_tags ON "case" {PG_TAGS}')


def downgrade() -> None:
    _replace(OLD)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_case_tags")


def _replace(definition: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP INDEX IF EXISTS ix_case_satisfaction")
        op.execute(f'CREATE INDEX ix_case_satisfaction ON "case" {definition}')
