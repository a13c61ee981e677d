"""The transport layer (placeholder; being written)."""
