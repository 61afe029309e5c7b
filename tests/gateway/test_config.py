"""config.yaml: interpolation, validation messages, and the shipped file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return info.value.problems


def test_shipped_config_loads_with_every_provider_kind() -> None:
    cfg = load_config(REPO / "config.yaml", env={})
    kinds = {p.kind for p in cfg.providers.values()}
    assert kinds == {"demo", "openai", "azure", "anthropic", "gemini", "dashscope", "hunyuan", "ollama"}
    for name in ("openai", "dashscope", "hunyuan", "anthropic", "deepseek", "moonshot", "groq", "gemini"):
        assert name in cfg.providers
    assert cfg.providers["dashscope"].base_url == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    assert cfg.providers["openai"].api_key is None  # no key in the environment: client credentials pass through
    assert cfg.pricing.book.exists()


def test_interpolation_with_defaults_and_env(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "server: {host: '${H:-0.0.0.0}', port: ${P}}\n"
        "providers: {x: {kind: openai, base_url: '${URL}', api_key_env: XKEY}}\n"
    )
    cfg = load_config(path, env={"P": "9001", "URL": "http://up.example/v1", "XKEY": "sk-x"})
    assert (cfg.server.host, cfg.server.port) == ("0.0.0.0", 9001)
    assert cfg.providers["x"].base_url == "http://up.example/v1" and cfg.providers["x"].api_key == "sk-x"


def test_every_problem_is_reported_on_its_own_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "server: {port: 99999, hots: x}\n"
        "storage: {backend: sqlite}\n"
        "providers:\n"
        "  a: {kind: nosuch, base_url: http://x}\n"
        "  b: {kind: openai, base_url: ftp://x}\n"
        "  c: {kind: openai, base_url: 'http://x', timeout: -1}\n"
        "models:\n"
        "  - {name: m, provider: zzz}\n"
        "  - {name: n, provider: b}\n"
        "tenants: {acme: {discount_percent: 150}}\n"
        "surprise: 1\n"
        "key: ${MISSING}\n",
    )
    text = "\n".join(found)
    for expected in (
        "server.port: expected an integer from 0 to 65535, got 99999",
        "server.hots: unknown key",
        "storage.backend: expected 'duckdb' or 'ducklake', got 'sqlite'",
        "providers.a.kind: expected one of",
        "providers.b.base_url: expected an http(s) URL, got 'ftp://x'",
        "providers.c.timeout: expected a positive number of seconds, got -1",
        "models[0].provider: 'zzz' is not a configured provider",
        "tenants.acme.discount_percent: expected a number from 0 to 100",
        "surprise: unknown section",
        "environment variable MISSING is not set",
    ):
        assert expected in text, f"missing {expected!r} in:\n{text}"
    assert all("\n" not in p for p in found)
    assert not any("models[1]" in p for p in found), "a broken provider's own problem is enough"


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "server:\n  port: [1,\n")
    assert len(found) == 1 and "invalid YAML" in found[0] and "line" in found[0]


def test_cli_rejects_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server: {port: nope}\n")
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 2
    assert "config error:" in out.stderr and "server.port" in out.stderr and "Traceback" not in out.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(tmp_path / "none.yaml")],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert missing.returncode == 2 and "cannot read config file" in missing.stderr


@pytest.mark.parametrize("port", ["99999", "-5", "http"])
def test_serve_and_demo_refuse_a_port_out_of_range(port: str) -> None:
    for command in ("serve", "demo"):
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", command, "--port", port], capture_output=True, text=True, cwd=REPO
        )
        assert out.returncode == 2 and "--port" in out.stderr and "0 to 65535" in out.stderr, out.stderr


def test_a_bad_metrics_section_is_a_config_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, "metrics: {tenant_label: {mode: everything}}\n")
    assert any(p.startswith(f"{tmp_path / 'c.yaml'}: metrics.tenant_label") for p in found), found


BOOK = """\
fx:
  - {from: CNY, to: USD, rate: "0.14", effective_from: 2025-01-01}
prices:
  - {provider: openai, model: gpt-4o, currency: USD, effective_from: 2025-01-01, input: 2.5, output: 10}
  - {provider: deepseek, model: deepseek-chat, currency: CNY, effective_from: 2025-01-01, input: 2, output: 8}
"""


def serve_refused(tmp_path: Path, config: str, *flags: str) -> list[str]:
    """`meterway serve` on `config` (with a small book at book.yaml): its stderr lines, after checking it
    exited 2 without opening the store."""
    (tmp_path / "book.yaml").write_text(BOOK)
    path = tmp_path / "c.yaml"
    path.write_text("storage: {path: data/e.duckdb}\n" + config)
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(path), "--port", "0", *flags],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert not (tmp_path / "data").exists()  # refused before anything started
    return out.stderr.splitlines()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_a_reporting_currency_the_book_has_no_rates_for(tmp_path: Path, workers: str) -> None:
    lines = serve_refused(tmp_path, "pricing: {book: book.yaml, reporting_currency: XYZ}\n", "--workers", workers)
    where = f"config error: {tmp_path / 'c.yaml'}: price book {tmp_path / 'book.yaml'}"
    assert lines == [
        f"{where}: fx: no CNY->XYZ rate for reporting currency XYZ, but 1 entries are priced in CNY "
        "(first: book.yaml: prices[1] (deepseek/deepseek-chat 2025-01-01))",
        f"{where}: fx: no USD->XYZ rate for reporting currency XYZ, but 1 entries are priced in USD "
        "(first: book.yaml: prices[0] (openai/gpt-4o 2025-01-01))",
    ]


def test_serve_refuses_a_budget_in_a_currency_the_book_cannot_convert_to(tmp_path: Path) -> None:
    budget = "budgets: [{name: a, tenant: acme, period: day, limit: '5', currency: XYZ, hard: true}]\n"
    assert serve_refused(tmp_path, "pricing: {book: book.yaml}\n" + budget) == [
        f"config error: {tmp_path / 'c.yaml'}: budgets: 'a' is in XYZ, but the price book has no CNY->XYZ or "
        "USD->XYZ rate (its FX rates: CNY->USD), so the requests it applies to priced in CNY or USD would be "
        "refused; add the rate to the book's fx, or use a currency it converts to"
    ]


def test_an_unset_variable_in_the_port_is_one_problem_and_port_0_is_kept(tmp_path: Path) -> None:
    assert problems(tmp_path, "server: {port: ${MW_PORT}}\n") == [
        f"{tmp_path / 'c.yaml'}: ${{MW_PORT}}: environment variable MW_PORT is not set (use ${{MW_PORT:-default}})"
    ]
    path = tmp_path / "zero.yaml"
    path.write_text("server: {port: 0}\n")
    assert load_config(path, env={}).server.port == 0


def test_serve_on_port_0_announces_the_port_it_was_given(tmp_path: Path) -> None:
    """`listening on` is logged once the socket is bound, with the port the OS chose."""
    path = tmp_path / "c.yaml"
    path.write_text(f"server: {{port: 0}}\nstorage: {{path: {tmp_path / 'e.duckdb'}}}\n")
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(path)]
    with subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as proc:
        try:
            assert proc.stderr is not None
            seen = []
            for line in proc.stderr:  # ends if the process exits
                seen.append(line)
                if "listening on" in line:
                    break
            url = seen[-1].split("listening on ", 1)[1].strip()
            port = int(url.rsplit(":", 1)[1])
            assert port != 0 and url == f"http://127.0.0.1:{port}", seen
            assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0
