"""`munit ui`: a local web page to explore a model's style space.

session.py holds the model and the uploaded photos (content codes cached) and does the compute
through munit_cli.inference; app.py serves it as a JSON API plus one static page (static/).
"""
