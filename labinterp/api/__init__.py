"""HTTP doors of labinterp (JSON API, docs, health)."""
