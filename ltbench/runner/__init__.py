"""Studies: expanding a grid into jobs and running them."""
