"""Persistence: SQLAlchemy 2 models, engines and sessions, Alembic migrations. Knows nothing of bot/."""
