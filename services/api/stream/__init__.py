"""The live stream: Server-Sent Events for wallboards, driven by the aggregator's commits."""
