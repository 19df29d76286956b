"""File IO shared by every domain: atomic writes, 2D images, label rendering."""
