"""The prediction database: SQLAlchemy models, engine set-up and alembic migrations."""

from serving.db.engine import make_engine
from serving.db.migrate import upgrade
from serving.db.models import Base, Prediction

__all__ = ["Base", "Prediction", "make_engine", "upgrade"]
