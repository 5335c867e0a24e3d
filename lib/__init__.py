"""dbt-scheduler: a lightweight cron-style daemon that runs dbt in production."""

# The released versions are in CHANGELOG.md; between releases, the next one with .dev0.
__version__ = "0.3.0.dev0"
