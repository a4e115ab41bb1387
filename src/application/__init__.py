"""Use cases of taskvault; depends on the domain and on ports only."""
