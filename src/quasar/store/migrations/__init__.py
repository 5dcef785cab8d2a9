"""Alembic migrations, shipped inside the package so an installed Quasar can upgrade its database."""
