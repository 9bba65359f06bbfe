"""One client's cost per call: `python client_loop.py ours|plain|legacy URL N` prints seconds for N calls."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

BODY = {"prompt": "p" * 200, "input_text": "Question: ...", "question": {"question_id": 1, "options": ["a", "b"]}}


def main() -> None:
    mode, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "plain":
        import requests

        session = requests.Session()
        data = json.dumps(BODY).encode()

        def call() -> Any:
            return session.post(url + "/response", data=data, headers={"Content-Type": "application/json"}).json()

    else:
        if mode == "legacy":
            from benchflow import BenchClient  # the published 0.1.13
        else:
            from pytest_benchflow import BenchClient

        class Client(BenchClient):
            def prepare_input(self, raw_step_inputs: dict[str, Any]) -> dict[str, Any]:
                return raw_step_inputs

            def parse_response(self, raw_response: str) -> dict[str, Any]:
                return {"answer": raw_response}

        client = Client(url)

        def call() -> Any:
            return client.get_response(BODY)

    for _ in range(50):  # warm-up: connections, imports
        call()
    started = time.perf_counter()
    for _ in range(n):
        call()
    print(time.perf_counter() - started)


if __name__ == "__main__":
    main()
