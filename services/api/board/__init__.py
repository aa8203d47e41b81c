"""The wallboard page (``/board``): static files served by the read API, no data inside."""
