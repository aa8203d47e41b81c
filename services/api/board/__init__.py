"""The wallboard's reads: agents now, live sales, pace by hour (also sent on the stream)."""
