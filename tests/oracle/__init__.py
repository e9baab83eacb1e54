"""An oracle written by hand: API answers as the vendor's documents show them, and the database
rows a sync must make of them, worked out by reading the documents, not by running any code.

``answers.py`` holds the answers (the seeds' examples with their syntax errors repaired, plus
objects for the forms the documents name but show no example of); ``rows.py`` the rows, every
column a user can query, each value worked out by hand. Nothing here imports ``catalog``:
an expectation computed with the product's own ``normalize`` would agree with any bug in it.
"""
