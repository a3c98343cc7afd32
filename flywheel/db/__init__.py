"""The prediction database: SQLAlchemy models, engine set-up and alembic migrations."""

from flywheel.db.engine import make_engine
from flywheel.db.migrate import upgrade
from flywheel.db.models import Base, Prediction

__all__ = ["Base", "Prediction", "make_engine", "upgrade"]
