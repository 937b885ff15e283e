"""A team server with authentication: a real `mlflow server --app-name basic-auth` on 127.0.0.1
(its own folder, auth database and admin), a user of its own. The right credentials track a run;
wrong or missing ones stop the command in one line before TensorFlow loads; the password is in
no param, tag, artifact, log or message, nor in the run link MLflow prints. The probe's TLS and
token settings are checked against a real TLS server."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import serve_mlflow, without_tensorflow

ADMIN_PASSWORD = "admin-pw-7731-server"
USER, PASSWORD = "alice", "alice-pw-4409/@:x"
WRONG_PASSWORD = "not-alices-pw-5521"


def _request(url: str, user: str, password: str, body: dict | None = None) -> dict:
    basic = base64.standard_b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Basic {basic}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"{}")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """http://127.0.0.1:<port> of a basic-auth server with user alice; stopped (its whole process
    group) at teardown. One per module: starting one takes several seconds."""
    home = tmp_path_factory.mktemp("mlflow_auth_server")
    config = home / "basic_auth.ini"
    # MLflow's own basic_auth.ini, with the auth database in this folder instead of the working
    # one, and its cache of accepted passwords on: each check of a password hash costs the server
    # about a second of CPU, and a training run makes many requests.
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{home / 'basic_auth.db'}\nadmin_username = admin\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                      "auth_cache_ttl_seconds = 600\n")
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "csrf-key-of-this-test-server"}
    with serve_mlflow(home, "--app-name", "basic-auth", env=env) as uri:
        _request(uri + "/api/2.0/mlflow/users/create", "admin", ADMIN_PASSWORD, {"username": USER, "password": PASSWORD})
        yield uri


def test_wrong_or_missing_credentials_stop_in_one_line_before_tensorflow(cli, tmp_path, auth_server):
    host = auth_server.split("://", 1)[1]
    env = without_tensorflow(tmp_path)
    cases = [  # (extra environment, tracking.uri as typed, as it must be shown, who the line names)
        ({"MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": WRONG_PASSWORD}, auth_server, auth_server,
         f"for MLFLOW_TRACKING_USERNAME={USER}"),
        ({}, auth_server, auth_server, "(MLFLOW_TRACKING_USERNAME is not set)"),
        ({}, f"http://{USER}:{WRONG_PASSWORD}@{host}", f"http://{USER}:***@{host}", f"the user {USER} of tracking.uri"),
    ]
    for extra, uri, shown, who in cases:
        result = cli("tracking=server", f"tracking.uri={uri}", "epochs=1", "model=mlp", "width=8",
                     extra_env={**env, **extra})
        assert result.returncode == 2, result.stderr[-3000:]
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr[-3000:]
        assert lines[0].startswith("error: tracking.uri must be a tracking server that accepts your credentials")
        assert "401" in lines[0] and who in lines[0] and lines[0].endswith(f"Received: tracking.uri={shown}")
        assert WRONG_PASSWORD not in result.stdout + result.stderr
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_the_right_credentials_track_a_run_and_the_password_is_nowhere(cli, tmp_path, auth_server, monkeypatch):
    result = cli("tracking=server", f"tracking.uri={auth_server}", "tracking.experiment=auth-run", "epochs=1",
                 "model=mlp", "width=8", extra_env={"MLFLOW_TRACKING_USERNAME": USER, "MLFLOW_TRACKING_PASSWORD": PASSWORD})
    assert result.returncode == 0, result.stderr[-3000:]
    assert PASSWORD not in result.stdout + result.stderr

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")  # the admin reads what alice wrote
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    client = MlflowClient(auth_server)
    (run,) = client.search_runs(client.get_experiment_by_name("auth-run").experiment_id)
    assert run.info.status == "FINISHED" and "test_accuracy" in run.data.metrics
    leaks = [f"{key}={value}" for key, value in {**run.data.params, **run.data.tags}.items() if PASSWORD in str(value)]
    folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "downloaded")))
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "trainer.log" for p in files) and any(p.name == "config.yaml" for p in files)
    (run_dir,) = (tmp_path / "outputs" / "runs").glob("*/*")
    files += [p for p in run_dir.rglob("*") if p.is_file()]  # the log and the records left on disk
    leaks += [str(p) for p in files if PASSWORD.encode() in p.read_bytes()]
    assert not leaks, leaks


# --- the probe's TLS and token settings, against a real TLS server ------------------------------

TOKEN = "bearer-token-6612ab"


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, signed by itself."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """https://127.0.0.1:<port> with a self-signed certificate that requires a client certificate
    and answers 200 only to `Authorization: Bearer TOKEN`, 401 otherwise; and the certificates."""
    import http.server
    import ssl
    import threading

    folder = tmp_path_factory.mktemp("tls")
    server_cert, server_key = _self_signed(folder, "server")
    client_cert, client_key = _self_signed(folder, "client")
    client_pem = folder / "client.pem"  # what MLFLOW_TRACKING_CLIENT_CERT_PATH names: certificate and key
    client_pem.write_bytes(client_cert.read_bytes() + client_key.read_bytes())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.headers.get("Authorization") == f"Bearer {TOKEN}"
            self.send_response(200 if ok else 401)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_cert, server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_cert)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", server_cert, client_pem
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()


def test_the_probe_uses_mlflow_tls_and_token_settings(tls_server, monkeypatch):
    from trainer.tracking import store
    from trainer.errors import ConfigError

    uri, server_cert, client_pem = tls_server
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_INSECURE_TLS",
                 "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_CLIENT_CERT_PATH", "MLFLOW_TRACKING_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(client_pem.parent))  # no ~/.mlflow/credentials of the machine's
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    monkeypatch.setenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", str(client_pem))

    with pytest.raises(ConfigError, match="certificate verify failed.*MLFLOW_TRACKING_SERVER_CERT_PATH"):
        store.prepare_store(uri)  # a server certificate nobody vouches for
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(server_cert))
    store.prepare_store(uri)  # trusted, with the client certificate and the token
    monkeypatch.delenv("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    with pytest.raises(ConfigError, match="did not answer"):
        store.prepare_store(uri)  # no client certificate: the server ends the handshake
    monkeypatch.setenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", str(client_pem))
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    store.prepare_store(uri)  # not verified, as asked

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "some-other-token-1")
    with pytest.raises(ConfigError) as refused:
        store.prepare_store(f"https://bob:pw-of-bob-77@{uri.split('://', 1)[1]}")
    message = str(refused.value)
    assert "401" in message and "the user bob of tracking.uri" in message and "pw-of-bob-77" not in message
    assert message.endswith(f"Received: tracking.uri=https://bob:***@{uri.split('://', 1)[1]}")


def test_a_password_in_the_uri_is_not_printed_when_a_run_ends(auth_server, tmp_path):
    """MLflow's client prints a link to every run it ends on a server: with the tracking URI in it."""
    quoted = urllib.parse.quote(PASSWORD, safe="")
    uri = auth_server.replace("://", f"://{USER}:{quoted}@")
    code = ("import sys; from trainer.tracking import store; from mlflow.tracking import MlflowClient\n"
            "store.prepare_store(sys.argv[1]); client = MlflowClient(sys.argv[1])\n"
            "run = client.create_run(client.create_experiment('uri-credentials'))\n"
            "client.set_terminated(run.info.run_id)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    result = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "alice-pw-4409" not in result.stdout + result.stderr  # the start of the password, quoted or not
