"""End-of-turn analyzers: is the user's spoken turn complete? (see :class:`TurnAnalyzer`)."""
