"""One module per runtime behind one small interface (see base.py); registry.py says what is usable."""
