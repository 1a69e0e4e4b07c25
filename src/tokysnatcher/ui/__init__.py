"""What the user sees: the live view, plain lines, summaries and tables."""
