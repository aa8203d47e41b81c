"""Metrics and leaderboards: any KPI for any scope and period, summed from the rollups."""
