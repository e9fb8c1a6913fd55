"""Thin asyncio adapters around the sans-IO associations: the only I/O in the package."""
