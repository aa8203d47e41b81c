"""Coaching and analysis: the driver model, the best time to call, the diagnosis of a
target behind, and anomalies against the same weekday of previous weeks."""
