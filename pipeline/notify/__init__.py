"""Notifications: webhook senders (Discord, a generic JSON webhook) and what a message says."""
