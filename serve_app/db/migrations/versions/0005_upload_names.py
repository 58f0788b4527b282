"""uploads remember a file's name and details (Replicate's files: metadata, checksums)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('uploads', sa.Column('name', sa.String(length=255), nullable=True))
    op.add_column('uploads', sa.Column('details', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column('uploads', 'details')
    op.drop_column('uploads', 'name')
