"""alert_deliveries.lease_owner: which process is sending, so a restart resumes only dead processes' sends

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 02:25:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alert_deliveries') as batch:
        batch.add_column(sa.Column('lease_owner', sa.String(length=96), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('alert_deliveries') as batch:
        batch.drop_column('lease_owner')
