"""`toolkit ui` and `toolkit dashboard`: the servers a researcher browses the store with.

`toolkit ui` is MLflow's own server on the tracking store, started so that it answers within a few
seconds on a small machine and opens the toolkit's experiments on their runs.

- One uvicorn worker and no job runner (the job runner serves GenAI judges, which the toolkit
  does not use): measured on 2 cores, 3.5 s to the first answer instead of about 9 s.
- MLflow 3.x's UI opens every experiment on its GenAI overview (traces, token usage) unless the
  browser has chosen "Model training" once. The choice lives in the browser's local storage; it
  is not a server setting, and the `mlflow.experimentKind` tag is no longer read by 3.17's page
  once the switch exists. So the server is started with `--app-name toolkit`, MLflow's plugin
  point for apps (the entry point `mlflow.app` in pyproject.toml, as MLflow's basic-auth app is
  registered), and `create_app` wraps MLflow's app to serve its index.html with a one-line script
  that makes "Model training" the default. A choice the user makes in the UI is kept. This is the
  one place that depends on the UI's storage keys (`DEFAULTS`).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

from toolkit import ToolkitError, masked
from toolkit.storage_errors import cannot_open_optuna_storage

UI_HOST, UI_PORT = "127.0.0.1", 5000  # where `toolkit ui` serves the MLflow UI of a local store
DASHBOARD_PORT = 8080  # where `toolkit dashboard` serves optuna-dashboard
ML_WORKFLOW = "workflowType=machine_learning"  # the UI's URL parameter for its "Model training" view
# The UI's own local-storage defaults, set only where the browser holds no choice: the "Model
# training" view, and the assistant panel not opened by itself (it takes a third of the page).
DEFAULTS = {"mlflow.workflowType_v1": '"machine_learning"', "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true"}
SCRIPT = (
    "<script>"
    + "".join(f"if(localStorage.getItem({k!r})===null)localStorage.setItem({k!r},{v!r});" for k, v in DEFAULTS.items())
    + "</script>"
)


def runs_url(base: str, experiment_id: str) -> str:
    """The runs view of an experiment, whatever view the browser last used."""
    return f"{base}/#/experiments/{experiment_id}/runs?{ML_WORKFLOW}"


def index_html() -> bytes:
    import mlflow

    page = (Path(mlflow.__file__).parent / "server" / "js" / "build" / "index.html").read_text()
    return page.replace("<head>", "<head>" + SCRIPT, 1).encode()


def create_app():
    """The ASGI app `mlflow server --app-name toolkit` runs: MLflow's, with the index page above."""
    from mlflow.server.fastapi_app import app as mlflow_app

    page = index_html()

    async def app(scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] in ("/", "/index.html"):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/html; charset=utf-8"),
                        (b"content-length", str(len(page)).encode()),
                        (b"cache-control", b"no-cache"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": page})
        else:
            await mlflow_app(scope, receive, send)

    return app


def print_runs_links(base: str):
    from toolkit.store import reading

    for name, experiment in reading.experiments().items():
        print(f"  {name}: {masked(runs_url(base, experiment))}")
    sys.stdout.flush()


def check_port_free(host: str, port: int):
    """Refuse a port another server listens on, before any link is printed: the links would open
    that server (perhaps another store's UI), not this one."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: a closed port is free
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ToolkitError(
                f"port {port} on {host} is taken ({exc.strerror}): another server listens there; "
                "stop it or pass --port N"
            ) from None


def serve(host: str, port: int):
    """Print the runs view of every experiment in the store, then become the MLflow server (or,
    when the store is a tracking server already, only print its links). Runs can be edited and
    deleted in the UI, so a local store this process may write is opened to write, its maintenance
    done (`store.maintenance`: a moved store shows its own files); one it may only read is served
    as it is."""
    from toolkit.store import location, maintenance, writing

    uri = location.tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"The store is the MLflow server {masked(uri)}; its UI is there:")
        print_runs_links(uri.rstrip("/"))
        return
    check_port_free(host, port)
    if location.writable():
        writing.writer()
    else:
        location.existing_store()
        if maintenance.moved(location.artifact_root(uri).parent):
            print(
                "note: this store was moved and may only be read here, so the UI cannot show its runs' "
                "files (the database records the old folder); `toolkit ui` run once by a user who may "
                "write the store points it at its own files",
                file=sys.stderr,
            )
    base = f"http://{host}:{port}"
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--app-name",
        "toolkit",
        "--workers",
        "1",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if location.artifact_root(uri):
        argv += ["--default-artifact-root", location.artifact_root(uri).as_uri()]
    print(f"MLflow UI on {base} (store {masked(uri)}); Ctrl-C stops it")
    print_runs_links(base)
    os.environ["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    os.execv(sys.executable, argv)  # the server takes over this process, so signals reach it directly


def serve_dashboard(storage: str | None, host: str, port: int):
    """Print the dashboard page of every study in the Optuna storage, then become optuna-dashboard."""
    import optuna

    from toolkit.store import location

    if importlib.util.find_spec("optuna_dashboard") is None:
        raise ToolkitError("optuna-dashboard is not installed: pip install -e '.[dashboard]' (`make install` does)")
    url = location.existing_optuna_storage(storage)
    check_port_free(host, port)
    try:
        optuna_storage = optuna.storages.get_storage(url)
        names = [study.study_name for study in optuna_storage.get_all_studies()]
        pages = {
            name: f"http://{host}:{port}/dashboard/studies/{optuna_storage.get_study_id_from_name(name)}"
            for name in names
        }
    except Exception as exc:  # a bad URL or an unreachable server fails deep inside SQLAlchemy
        raise cannot_open_optuna_storage(url, exc) from None
    print(f"optuna-dashboard on http://{host}:{port} (storage {masked(url)}); Ctrl-C stops it")
    for name, page in pages.items():
        print(f"  {name}: {page}")
    sys.stdout.flush()
    dashboard = Path(sys.executable).parent / "optuna-dashboard"  # the package's console script
    os.execv(dashboard, [str(dashboard), url, "--host", host, "--port", str(port), "--quiet"])  # no request log
