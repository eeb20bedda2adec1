"""The pure scheduling core: a state snapshot in, decisions out (ARCHITECTURE.md principle 2)."""
