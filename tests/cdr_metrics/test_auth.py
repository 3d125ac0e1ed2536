"""Bearer tokens, the private_key_jwt token endpoint and mTLS, over real HTTP(S) on loopback."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import dlt
import httpx
import jwt
import pytest

from concord_pipelines.cdr_metrics.client import HolderClient, client_assertion
from concord_pipelines.cdr_metrics.config import holder_from_mapping
from concord_pipelines.cdr_metrics.runner import run
from concord_pipelines.errors import ApiError
from concord_pipelines.sandbox.cdr_holder import ASSERTION_TYPE, SCOPE, CdrHolderServer, HolderState

from .conftest import holder_config, query
from .keys import make_pki, new_key, private_pem, public_pem


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
def test_private_key_jwt_token_endpoint(alg: str, state: HolderState) -> None:
    key = new_key(alg)
    state.clients = {"register": public_pem(key)}
    with CdrHolderServer(state) as server:
        holder = holder_from_mapping(
            holder_config(
                server,
                token_endpoint=server.token_endpoint,
                client_id="register",
                private_key=private_pem(key),
                signing_alg=alg,
            )
        )
        with HolderClient(holder) as c:
            assert c.get_metrics(5, 2, "ALL").version == 5
        assertion = client_assertion(holder)
    claims = jwt.decode(assertion, public_pem(key), algorithms=[alg], audience=server.token_endpoint)
    assert claims["iss"] == claims["sub"] == "register"
    assert claims["exp"] > claims["iat"] and uuid.UUID(claims["jti"])
    assert jwt.get_unverified_header(assertion)["alg"] == alg


def test_token_endpoint_rejections(state: HolderState) -> None:
    key, other = new_key("PS256"), new_key("PS256")
    state.clients = {"register": public_pem(key)}
    with CdrHolderServer(state) as server:
        base = holder_config(server, token_endpoint=server.token_endpoint, client_id="register")
        wrong = holder_from_mapping({**base, "private_key": private_pem(other)})
        with HolderClient(wrong) as c, pytest.raises(ApiError) as err:
            c.get_metrics(5, 2, "ALL")
        assert str(err.value) == (
            "holder bank: token endpoint refused client_credentials: "
            "HTTP 401 invalid_client: client assertion rejected: InvalidSignatureError"
        )
        assert "PRIVATE" not in str(err.value)

        good = holder_from_mapping({**base, "private_key": private_pem(key)})
        assertion = client_assertion(good)
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": SCOPE,
        }
        with httpx.Client() as http:
            assert http.post(server.token_endpoint, data=form).status_code == 200
            replay = http.post(server.token_endpoint, data=form)
            assert replay.status_code == 401 and "replayed" in replay.json()["error_description"]
            assert (
                http.post(server.token_endpoint, data={**form, "scope": "bank:accounts"}).json()["error"]
                == "invalid_scope"
            )
            other_aud = holder_from_mapping(
                {**base, "private_key": private_pem(key), "token_endpoint": server.url + "/x"}
            )
            r = http.post(
                server.token_endpoint, data={**form, "client_assertion": client_assertion(other_aud)}
            )
            assert r.json()["error_description"] == "client assertion rejected: InvalidAudienceError"
            # no token -> 401; an issued token works
            metrics = server.url + "/cds-au/v1/admin/metrics"
            assert http.get(metrics, headers={"x-v": "5"}).status_code == 401
            form["client_assertion"] = client_assertion(good)
            token = http.post(server.token_endpoint, data=form).json()["access_token"]
            ok = http.get(metrics, headers={"x-v": "5", "Authorization": f"Bearer {token}"})
            assert ok.status_code == 200


def test_static_bearer_token_and_no_secret_in_messages(
    state: HolderState, pipeline: dlt.Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state.tokens = {"right-token-123"}
    with CdrHolderServer(state) as server:
        result = run(
            [
                holder_config(server, "good", token="right-token-123"),
                holder_config(server, "bad", token="wrong-token-456"),
            ],
            pipeline,
        )
    assert [o.holder for o in result.outcomes.failed] == ["bad"]
    assert result.error_lines() == [
        "error: holder bad refused access (HTTP 401): check the token, client certificate and scope admin:metrics.basic:read"
    ]
    assert query(pipeline, "SELECT DISTINCT data_holder FROM metric_observations") == [("good",)]
    everything = caplog.text + result.summary() + " ".join(result.error_lines()) + repr(result.outcomes)
    assert "right-token-123" not in everything and "wrong-token-456" not in everything
    assert "wrong-token-456" not in repr(
        holder_from_mapping(holder_config(server, "bad", token="wrong-token-456"))
    )


def test_mtls_with_private_key_jwt_end_to_end(
    tmp_path: Path, state: HolderState, pipeline: dlt.Pipeline
) -> None:
    pki = make_pki(tmp_path)
    key = new_key("ES256")
    key_file = tmp_path / "register.pem"
    key_file.write_text(private_pem(key))
    state.clients = {"register": public_pem(key)}
    server = CdrHolderServer(
        state,
        ssl_certfile=str(pki.server_cert),
        ssl_keyfile=str(pki.server_key),
        ssl_ca_certs=str(pki.ca),
        require_client_cert=True,
    )
    with server:
        assert server.url.startswith("https://")
        holder = holder_config(
            server,
            token_endpoint=server.token_endpoint,
            client_id="register",
            private_key_path=str(key_file),
            signing_alg="ES256",
            cert=str(pki.client_cert),
            key=str(pki.client_key),
            ca=str(pki.ca),
        )
        result = run([holder], pipeline)
        assert result.ok, result.error_lines()
        assert query(pipeline, "SELECT count(*) > 0 FROM metric_observations") == [(True,)]

        no_client_cert = holder_from_mapping({k: v for k, v in holder.items() if k not in ("cert", "key")})
        with (
            HolderClient(no_client_cert) as c,
            pytest.raises(ApiError, match=r"^holder bank: cannot reach https://.*mTLS"),
        ):
            c.get_metrics(5, 2, "ALL")
        untrusted = holder_from_mapping({k: v for k, v in holder.items() if k != "ca"})
        with HolderClient(untrusted) as c, pytest.raises(ApiError, match="CERTIFICATE_VERIFY_FAILED"):
            c.get_metrics(5, 2, "ALL")
