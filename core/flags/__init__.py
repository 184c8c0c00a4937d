"""Flagging stars: rules, presets, statistics, the rule engine and anomaly scores."""
