"""The domain: plain async functions over a database session. No aiohttp, no WeChat types."""
