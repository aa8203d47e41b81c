"""Contests (竞赛): agents of some teams, or teams against each other, ranked by one KPI
over a fixed time, with live standings and the winners once it has ended."""
