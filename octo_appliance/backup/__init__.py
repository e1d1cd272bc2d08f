"""Online backup and restore of an appliance's data, never its master key (docs/operator-guide.md).

``create`` writes the backup file (``archive`` says its layout), ``restore`` reads it back into
an empty data dir and database, ``database`` handles SQLite and PostgreSQL.
"""
