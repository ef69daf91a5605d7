"""The web dashboard's static files (HTML, CSS, ES modules), served by ``functions/api/routes/pages.py``."""
