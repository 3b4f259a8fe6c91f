"""series_activity: which gateway process has an association delivering to which series

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 02:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('series_activity',
    sa.Column('owner', sa.String(length=96), nullable=False),
    sa.Column('series_uid', sa.String(length=64), nullable=False),
    sa.Column('hold_until', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('owner', 'series_uid')
    )
    op.create_index(op.f('ix_series_activity_hold_until'), 'series_activity', ['hold_until'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_series_activity_hold_until'), table_name='series_activity')
    op.drop_table('series_activity')
