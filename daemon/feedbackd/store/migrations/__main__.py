"""``python -m feedbackd.store.migrations revision "what changed"``: write the next revision file.

The file holds what Alembic autogenerate finds between the newest revision and the models; read it
and finish it before committing (see the package docstring).
"""

from __future__ import annotations

import argparse

from feedbackd.store.migrations import runner


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m feedbackd.store.migrations")
    sub = parser.add_subparsers(dest="command", required=True)
    revision = sub.add_parser("revision", help="write versions/NNNN_<message>.py from the models")
    revision.add_argument("message", help="what the revision does, e.g. 'add case channel'")
    args = parser.parse_args()
    print(runner.new_revision(args.message))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
