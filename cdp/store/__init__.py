"""The store: the customer's own SQL database (SQLite embedded, PostgreSQL in production)."""
