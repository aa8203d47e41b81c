"""Operator tools: API keys, chat channels, imports, and how they find the running stack."""
