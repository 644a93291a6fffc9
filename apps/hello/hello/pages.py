"""The HTML side: a page that shows what the request looked like to the app."""

from flask import Blueprint, current_app, redirect, render_template, request, url_for

pages = Blueprint("pages", __name__)


@pages.get("/")
def index():
    return render_template(
        "index.html",
        greeting=current_app.config["GREETING"],
        release=current_app.config["RELEASE_ID"],
        server=current_app.config["SERVER"],
        scheme=request.scheme,
        remote_addr=request.remote_addr,
    )


@pages.get("/hello/<name>")
def greet(name):
    return render_template("greet.html", name=name)


@pages.post("/echo")
def echo():
    """Echo a form body back, proving POST bodies cross the proxy intact."""
    return {"form": request.form.to_dict()}


@pages.get("/go-home")
def go_home():
    """A redirect built by url_for, proving links stay right behind the proxy."""
    return redirect(url_for("pages.index"))
