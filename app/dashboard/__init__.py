"""The Panel dashboard: server, app factory and one view per page area."""
