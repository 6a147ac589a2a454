"""Collectors: pull partner data into the store. They import the core, never the dashboard."""
