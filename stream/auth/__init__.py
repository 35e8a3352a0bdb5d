"""Who may report what: sources, their tokens and scopes, and signed reports (issue 17)."""
