"""Campaign background work, through Django's tasks API (thin calls into services)."""
