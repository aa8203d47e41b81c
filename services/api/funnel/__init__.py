"""The lead funnel: leads per stage, stage-to-stage conversion, and the backward plan."""
