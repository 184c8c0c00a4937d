"""State and data behind the explorer page, free of any GUI library."""
