"""Alembic's environment script: runs the revisions on the connection feedbackd hands it.

feedbackd configures Alembic in code (runner.config), never from an alembic.ini: the connection,
already inside its locked transaction, comes in ``config.attributes["connection"]``.  For
``revision --autogenerate`` the models' metadata comes in ``attributes["target_metadata"]``.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy.types import TypeDecorator


def render_item(kind: str, obj: Any, _context: Any) -> str | Literal[False]:
    """Autogenerate writes sqlmodel's column types as the plain SQLAlchemy types they store as."""
    if kind == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("feedbackd runs its migrations itself: use `feedbackd db upgrade`")

context.configure(
    connection=connection,
    target_metadata=context.config.attributes.get("target_metadata"),
    render_as_batch=connection.dialect.name == "sqlite",  # autogenerate: ALTERs SQLite can do
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():  # inside the caller's transaction this does nothing
    context.run_migrations()
