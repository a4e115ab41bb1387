"""The taskvault domain: tasks and their invariants, standard library only."""
