"""frontdoor: the WeChat front door of a city's citizen-complaint office."""
