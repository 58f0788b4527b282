"""uploads remember their declared size (per-tenant upload quotas)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('uploads', sa.Column('size', sa.BigInteger(), nullable=True))
    op.create_index('ix_uploads_tenant', 'uploads', ['tenant'])
    op.create_index('ix_validations_tenant', 'validations', ['tenant'])


def downgrade() -> None:
    op.drop_index('ix_validations_tenant', 'validations')
    op.drop_index('ix_uploads_tenant', 'uploads')
    op.drop_column('uploads', 'size')
