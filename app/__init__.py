"""chemlatent application layer: the command line and the Panel dashboard."""
