"""Who is calling: static and managed keys, and the principal they resolve to."""
