"""The WeChat edge: webhook protocol, outbound API client and the built-in fake API."""
