"""Downloading a book: plan, run, schedule, and the work of each chapter."""
