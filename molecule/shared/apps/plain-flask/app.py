"""An ordinary Flask app, as a newcomer brings it: one page, no health route."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return "plain flask\n"
