"""Key providers: turn what a request carries into an index's unwrapped data key."""
