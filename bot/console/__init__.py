"""The operator console: staff work every case from a browser (server-rendered pages, aiohttp + Jinja2).

app.py builds the sub-application mounted at /console/; auth.py signs operators in and out and guards every
request (session, CSRF); security.py sets the headers every page carries; roles.py says who may do what;
cases.py holds the inbox, the case page and its actions — each calling the same services as the CLI.
"""
