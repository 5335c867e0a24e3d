"""dbt-scheduler: a lightweight cron-style daemon that runs dbt in production."""

__version__ = "0.1.0"
