"""One module per model family: its `FamilySpec` and tiny-checkpoint builder, data only."""
