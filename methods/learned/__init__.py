"""Learned codecs (CompressAI's image models, SSF video) and what every learned method shares: its weight files."""
