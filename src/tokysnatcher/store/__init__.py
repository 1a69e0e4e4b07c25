"""The database of the queue, the archive of finished books and the history of runs."""
