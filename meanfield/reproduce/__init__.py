"""Reproductions: published experiments replayed with their exact setup (placeholder)."""
