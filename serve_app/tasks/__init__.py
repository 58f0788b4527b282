"""Task state and dispatch: the record and its state machine (`state`), the fair queue
(`queue`), the single writer of state (`ledger`), dispatch to the family servers (`dispatch`),
retention (`retention`), and the Ray actor that holds them (`actor`)."""
