"""aiohttp handlers: one RouteTableDef per module."""
