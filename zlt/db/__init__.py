"""The database under the job store and the artifact registry: one connection (SQLite under ZLT_HOME, or the
PostgreSQL server `ZLT_STORE` names), the dialect layer that lets one set of SQL statements run on both, and the
runner of ordered migrations. Each owner keeps its own tables and migrations (zlt.jobs.db, zlt.artifacts.tables)
and hands its list to `connect`; both lists are recorded in one `migrations` table.
"""
