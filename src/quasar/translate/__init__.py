"""Other APIs' bodies to the chat request the pipeline runs, and its replies back to their shapes."""
