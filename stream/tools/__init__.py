"""Operator and user tools: the demo, paced producing, dead-letter tools, backup and restore,
the settings reference."""
