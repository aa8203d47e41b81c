"""Targets and what a manager reads from them: pacing, quota splits, scorecards, the
attainment ranking, and the working calendars pacing spreads a target over."""
