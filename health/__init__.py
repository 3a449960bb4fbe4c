"""Scoring models, health snapshots, recompute and alerts."""
