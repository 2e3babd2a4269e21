"""Widgets: they show what they are given and never read the store."""
