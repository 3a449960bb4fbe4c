"""Template tags and filters of the dashboards."""
