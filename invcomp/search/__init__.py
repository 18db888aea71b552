"""The inversion search and its losses, and the tone record's fit (pure functions of a generator and a target)."""
