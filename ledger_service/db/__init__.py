"""The metadata DB: engine set-up, migrations and the unit of work."""

from ledger_service.db.database import Database

__all__ = ["Database"]
