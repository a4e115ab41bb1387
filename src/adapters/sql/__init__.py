"""What both SQL stores share: the tables, their statements, rows and migrations."""
