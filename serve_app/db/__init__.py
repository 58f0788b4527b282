"""The database: tasks, imported models, validations and uploads (SQLAlchemy 2; SQLite in the
data dir by default, PostgreSQL for clusters), its Alembic migrations, and the group-committing
journal the task actor writes through."""
