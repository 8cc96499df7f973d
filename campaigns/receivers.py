"""Campaigns listen to the rooms below them (tenant deactivation, recorded events)."""
