"""Storage: the tables (models), the database connection (db) and files on disk (files)."""
