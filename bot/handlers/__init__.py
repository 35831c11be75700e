"""Handlers: one inbound message in, the text to answer out. They never see XML."""
