"""Storage and files: where captures go and how they are written (``disk``: atomic writes,
numbered files, free space), the FITS format (``fits``), and the gallery's view of a captures
folder (``gallery``: listings, thumbnails, zips, deletes). Plain functions, called from the
storage and gallery threads; nothing here knows the web layer."""
