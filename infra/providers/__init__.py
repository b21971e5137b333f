"""Model providers behind one small interface; each vendor SDK lives in its own file."""
