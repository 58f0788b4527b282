"""records as domain types: typed model and adapter sources, no wire types in stored models and
validations, a task's parameters kept once

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from serve_app.db import legacy

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

BATCH = 500
UPGRADES = {"models": legacy.model_record, "validations": legacy.validation,
            "tasks": legacy.task_record}


def upgrade() -> None:
    bind = op.get_bind()
    for name, upgraded in UPGRADES.items():
        table = sa.table(name, sa.column("id", sa.String), sa.column("record", sa.JSON))
        after = ""
        while True:  # by id, a batch at a time: a large tasks table never sits in memory
            rows = bind.execute(sa.select(table.c.id, table.c.record).where(table.c.id > after)
                                .order_by(table.c.id).limit(BATCH)).all()
            if not rows:
                break
            for row_id, record in rows:
                new = upgraded(record)
                if new is not record:
                    bind.execute(table.update().where(table.c.id == row_id).values(record=new))
            after = rows[-1][0]


def downgrade() -> None:
    raise NotImplementedError("0004 rewrites every stored record; to go back, restore the "
                              "database backup taken before upgrading")
