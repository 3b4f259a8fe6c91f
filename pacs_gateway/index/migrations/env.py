"""Alembic environment: runs on the connection handed in by ``db.migrate``.

Each revision spells out its own tables, so upgrading needs no models. What autogenerate compares
against, the metadata with every package's tables (``telerad.app.index_metadata()``), is handed in by
the caller as ``config.attributes["target_metadata"]``: the gateway knows only its own tables.
"""

from alembic import context

config = context.config
target_metadata = config.attributes.get("target_metadata")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from sqlalchemy import create_engine

        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            _run(connection)
    else:
        _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
