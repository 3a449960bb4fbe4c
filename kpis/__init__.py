"""KPI catalogue, set-based computation, targets, periods and business reviews."""
