"""``soiree serve``: the night over HTTP, for websites, TV graphics and people.

It reads Redis (standings, definitions) and the ``election-updates`` topic, never the tables, so
any number of ``serve`` processes run beside the workers. No Faust here (``tests/test_layers.py``).
"""
