"""Everything that acts on a recipe: commands, planning, launching and training."""
