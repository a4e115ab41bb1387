"""The edges of taskvault (HTTP, command line) and its composition root."""
