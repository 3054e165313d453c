"""Static checks of the production topology (docker-compose.yml and deploy/).

No Docker engine runs here, so these tests read the files: the compose file parses, images are
pinned, services are health-checked and ordered by health, the Besu genesis is a valid QBFT
genesis for exactly the committed validator keys and starts on Osaka, on a Besu release that has
it, the node allowlist names exactly those nodes, the hub's and the providers' nodes' settings
point at services the file defines, no hub holds a provider key and each node holds exactly its
own (docs/architecture.md, "Three roles"), the key custodians stand apart from the hub, each on its
own volume, network and chain node, and every node names all of them (docs/architecture.md, "Key
custody"), and no secret is written down.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest
import rlp
from eth_utils import is_checksum_address, keccak, to_checksum_address

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
BESU = DEPLOY / "besu"
DOCKERFILE = DEPLOY / "api" / "Dockerfile"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
VALIDATOR_COUNT = 4

# ${VAR}, ${VAR:-default}, ${VAR:?message}: a value taken from the environment.
INTERPOLATION = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(:?[-?][^}]*)?\}$")
SENSITIVE_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY|_KEYS)$")
FLOATING_TAGS = {"latest", "stable", "release", "main", "master", "edge", "mainline", "alpine", "slim"}
ONE_SHOT = "no"


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result = compose["services"]
    assert isinstance(result, dict) and result
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def resolve(value: str) -> str:
    """Stand-ins for interpolations: a ${VAR:-default} becomes its default, others a placeholder."""

    def one(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        return rest if operator in {"-", ":-"} else f"from-env-{name.lower().replace('_', '-')}"

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}", one, value)


def is_one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "")) == ONE_SHOT


def besu_options(service: dict[str, Any]) -> dict[str, str]:
    """Besu's options from BESU_* variables and --flags (flags win, as in Besu)."""
    options: dict[str, str] = {}
    for name, value in environment(service).items():
        if name.startswith("BESU_"):
            options[name[len("BESU_") :].lower().replace("_", "-")] = value
    for arg in service.get("command") or []:
        assert isinstance(arg, str), f"nested command entry {arg!r}: compose does not flatten lists"
        if arg.startswith("--"):
            key, _, value = arg[2:].partition("=")
            options[key] = value or "true"
    return options


def validator_names(services: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(name for name, s in services.items() if str(s.get("image", "")).startswith("hyperledger/besu:"))


def validators(services: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name in validator_names(services) if not is_one_shot(services[name])]


def committed_public_keys() -> list[bytes]:
    keys = []
    for index in range(1, VALIDATOR_COUNT + 1):
        text = (BESU / "keys" / f"validator-{index}" / "key.pub").read_text(encoding="utf-8").strip()
        assert re.fullmatch(r"0x[0-9a-f]{128}", text), f"validator-{index}/key.pub is not a 64-byte hex public key"
        keys.append(bytes.fromhex(text[2:]))
    return keys


def committed_addresses() -> list[str]:
    return [
        (BESU / "keys" / f"validator-{i}" / "address").read_text(encoding="utf-8").strip()
        for i in range(1, VALIDATOR_COUNT + 1)
    ]


def chain_ip(service: dict[str, Any]) -> str:
    return str(service["networks"]["chain"]["ipv4_address"])


def shares_network(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def names(s: dict[str, Any]) -> set[str]:
        nets = s.get("networks") or ["default"]
        return set(nets) if isinstance(nets, list) else set(nets.keys())

    return bool(names(a) & names(b))


def ledger_services(services: dict[str, dict[str, Any]]) -> list[str]:
    """Every long-running service built from this repository (whatever its command)."""
    return sorted(name for name, s in services.items() if "build" in s and not is_one_shot(s))


def serving(services: dict[str, dict[str, Any]], role: str) -> list[str]:
    return sorted(name for name in ledger_services(services) if services[name].get("command") == ["serve", role])


def hub_services(services: dict[str, dict[str, Any]]) -> list[str]:
    return serving(services, "hub")


def node_services(services: dict[str, dict[str, Any]]) -> list[str]:
    return serving(services, "node")


def custodian_services(services: dict[str, dict[str, Any]]) -> list[str]:
    return serving(services, "custodian")


def proxies(services: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in services.values() if str(s.get("image", "")).startswith("nginx:")]


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_network", BESU / "generate_network.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------- compose basics


def test_compose_parses_and_defines_the_topology(services: dict[str, dict[str, Any]]) -> None:
    assert len(validators(services)) == VALIDATOR_COUNT
    images = [str(s.get("image", "")) for s in services.values()]
    assert sum(i.startswith("ipfs/kubo:") for i in images) >= 2
    assert sum(i.startswith("ipfs/ipfs-cluster:") for i in images) >= 2
    assert sum(i.startswith("nginx:") for i in images) == 1
    assert len(hub_services(services)) >= 2
    # One node per provider organization, one key custodian per custody share, and no ledger service of a
    # fourth kind (`up` is everything in one).
    assert len(node_services(services)) >= 2
    assert len(custodian_services(services)) == 3
    assert set(ledger_services(services)) == (
        set(hub_services(services)) | set(node_services(services)) | set(custodian_services(services))
    )
    # The hub's database and one per node.
    assert sum(i.startswith("postgres:15") for i in images) == 1 + len(node_services(services))
    assert any(is_one_shot(s) and (s.get("command") or [""])[0] == "deploy" for s in services.values())


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image or "build" in service, f"{name}: neither image nor build"
        if not image:
            continue
        image = str(image)
        assert "${" not in image, f"{name}: image {image} is chosen by the environment, not pinned"
        if "@sha256:" in image:
            assert re.search(r"@sha256:[0-9a-f]{64}$", image), f"{name}: malformed digest in {image}"
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image} has no tag"
        assert tag.lower() not in FLOATING_TAGS, f"{name}: floating tag {image}"
        if "build" not in service:
            assert re.match(r"v?\d+\.\d+(\.\d+)?", tag), f"{name}: {image} is not pinned to a version"


def test_dockerfile_base_images_are_pinned_and_runtime_has_no_node() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    froms = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE | re.IGNORECASE)
    assert len(froms) >= 2, "the API image must be a multi-stage build"
    stages = {alias for _, alias in froms if alias}
    for image, _ in froms:
        if image in stages:
            continue
        tag = image.rpartition(":")[2]
        assert ":" in image and re.match(r"\d+\.\d+\.\d+", tag), f"base image {image} is not pinned to a version"
    assert froms[-1][0].startswith("python:3.11."), "the runtime stage is Python 3.11"
    runtime = text[text.rindex("\nFROM ") :]
    assert "node" not in runtime.lower().replace("no node.js", ""), "Node.js must not reach the runtime stage"
    assert "python -m ledger_service.chain.build" in text
    assert "requirements.lock" in text
    assert "npm ci" in text


def test_the_image_vendors_the_browser_code_from_the_lockfile() -> None:
    """The portal and /docs load every script from the server, so the image must carry them: copied
    from the locked node_modules at build time, before the package (and its static data) is installed."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    build = text[: text.rindex("\nFROM ")]
    assert "RUN bash scripts/vendor_portal.sh" in build
    assert build.index("npm ci") < build.index("RUN bash scripts/vendor_portal.sh") < build.index("RUN pip install")
    assert "swagger-ui-bundle.js" in text[text.rindex("\nFROM ") :], "the runtime stage checks the vendored files"
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert "consent_api/static/vendor" in ignored, "a workstation's vendor copy must not reach the image"


def test_long_running_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if is_one_shot(service):
            continue
        check = service.get("healthcheck")
        assert isinstance(check, dict), f"{name}: no healthcheck"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        test = check.get("test")
        assert test and test != ["NONE"], f"{name}: empty healthcheck"
        assert str(service.get("restart")) in {"unless-stopped", "always", "on-failure"}, f"{name}: no restart policy"


def test_every_dependency_waits_on_a_condition(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on")
        if depends is None:
            continue
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on undefined service {target}"
            condition = (spec or {}).get("condition")
            if is_one_shot(services[target]):
                assert condition == "service_completed_successfully", f"{name} -> {target}: {condition}"
            else:
                assert condition == "service_healthy", f"{name} -> {target}: {condition}"
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"


def test_api_replicas_start_after_the_deployment(services: dict[str, dict[str, Any]]) -> None:
    deployers = [n for n, s in services.items() if is_one_shot(s) and (s.get("command") or [""])[0] == "deploy"]
    assert len(deployers) == 1
    for name in hub_services(services):
        assert services[name]["depends_on"][deployers[0]]["condition"] == "service_completed_successfully"


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (ROOT / source).exists() or source.startswith("/"), f"{name}: bind source {source} missing"
                continue
            assert source in declared, f"{name}: volume {source} is not declared as a named volume"


# ---------------------------------------------------------------------------- the chain


@pytest.fixture(scope="module")
def genesis() -> dict[str, Any]:
    data = json.loads((BESU / "genesis.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_genesis_is_a_free_gas_qbft_genesis(genesis: dict[str, Any]) -> None:
    config = genesis["config"]
    assert isinstance(config["chainId"], int) and config["chainId"] > 0
    qbft = config["qbft"]
    for key in ("blockperiodseconds", "epochlength", "requesttimeoutseconds"):
        assert isinstance(qbft[key], int) and qbft[key] > 0, key
    assert qbft["requesttimeoutseconds"] > qbft["blockperiodseconds"]
    assert not {"clique", "ibft2", "ethash"} & set(config), "exactly one consensus protocol"
    assert config["zeroBaseFee"] is True
    assert int(genesis["baseFeePerGas"], 16) == 0
    # The contracts are compiled for evmVersion cancun (ledger_service/chain/build.py).
    assert config["londonBlock"] == 0 and config["shanghaiTime"] == 0 and config["cancunTime"] == 0
    assert int(genesis["difficulty"], 16) == 1
    assert genesis["mixHash"] == "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"


# The first Besu release that runs Osaka (docs/operations.md, "Forks").
MIN_BESU = (25, 11)
BLOCK_FORKS = (
    "homesteadBlock",
    "eip150Block",
    "eip155Block",
    "eip158Block",
    "byzantiumBlock",
    "constantinopleBlock",
    "petersburgBlock",
    "istanbulBlock",
    "berlinBlock",
    "londonBlock",
)
# Besu's timestamp forks in order, up to Osaka, which brings the P-256 precompile (EIP-7951) that
# patients' passkey signatures are verified with.
TIME_FORKS = ("shanghaiTime", "cancunTime", "pragueTime", "osakaTime")
# The Prague request contracts (EIP-7685) Besu calls on QBFT too; it refuses to start without the
# three addresses and rejects a block when the withdrawal or consolidation one holds no code.
REQUEST_CONTRACT_KEYS = (
    "depositContractAddress",
    "withdrawalRequestContractAddress",
    "consolidationRequestContractAddress",
)
CALLED_REQUEST_CONTRACT_KEYS = ("withdrawalRequestContractAddress", "consolidationRequestContractAddress")


def besu_version(image: str) -> tuple[int, int, int]:
    match = re.fullmatch(r"hyperledger/besu:(\d+)\.(\d+)\.(\d+)(?:@sha256:[0-9a-f]{64})?", image)
    assert match, f"{image} is not a hyperledger/besu release tag"
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def test_every_besu_service_runs_one_release_with_osaka(services: dict[str, dict[str, Any]]) -> None:
    names = validator_names(services)
    assert len(names) > VALIDATOR_COUNT, "the validators and the volume init"
    versions = {name: besu_version(str(services[name]["image"])) for name in names}
    for name, version in versions.items():
        assert version[:2] >= MIN_BESU, f"{name}: Besu {version} has no Osaka (needs {MIN_BESU} or later)"
    assert len(set(versions.values())) == 1, f"the Besu services run different releases: {versions}"


def test_genesis_activates_every_fork_through_osaka(genesis: dict[str, Any]) -> None:
    config = genesis["config"]
    for fork in BLOCK_FORKS:
        assert config.get(fork) == 0, f"{fork} is not active from the genesis block"
    times = [config.get(fork) for fork in TIME_FORKS]
    for fork, at in zip(TIME_FORKS, times, strict=True):
        assert isinstance(at, int) and not isinstance(at, bool) and at >= 0, f"{fork} is missing: {at!r}"
    assert times == sorted(times), f"the forks are out of order: {dict(zip(TIME_FORKS, times, strict=True))}"
    assert config["osakaTime"] <= int(genesis["timestamp"], 16), "Osaka is not active from the genesis block"


def test_genesis_holds_the_prague_request_contracts(genesis: dict[str, Any]) -> None:
    config = genesis["config"]
    alloc = {bytes.fromhex(address.removeprefix("0x")): account for address, account in genesis["alloc"].items()}
    for key in REQUEST_CONTRACT_KEYS:
        address = config.get(key)
        assert isinstance(address, str) and re.fullmatch(r"0x[0-9a-fA-F]{40}", address), f"{key}: {address!r}"
    for key in CALLED_REQUEST_CONTRACT_KEYS:
        account = alloc.get(bytes.fromhex(config[key][2:]))
        code = bytes.fromhex(str((account or {}).get("code", "0x")).removeprefix("0x"))
        assert code, f"{key} {config[key]} holds no code: Besu rejects every Prague block"
    for account in genesis["alloc"].values():
        assert int(account.get("balance", "0x0"), 16) == 0, "gas is free: no account needs a balance"


def test_genesis_extra_data_lists_exactly_the_committed_validators(genesis: dict[str, Any]) -> None:
    decoded = rlp.decode(bytes.fromhex(genesis["extraData"][2:]))
    assert len(decoded) == 5, "QBFT extraData is [vanity, validators, vote, round, seals]"
    vanity, listed, vote, round_, seals = decoded
    assert vanity == b"\x00" * 32
    assert vote == [] and seals == [] and round_ == b""
    addresses = [to_checksum_address(a) for a in listed]
    assert all(len(a) == 20 for a in listed)
    assert len(addresses) == VALIDATOR_COUNT == len(set(addresses))
    assert listed == sorted(listed), "validators are listed in ascending address order"
    assert set(addresses) == set(committed_addresses())


def test_validator_addresses_derive_from_the_public_keys() -> None:
    for public, address in zip(committed_public_keys(), committed_addresses(), strict=True):
        assert is_checksum_address(address)
        assert address == to_checksum_address(keccak(public)[12:])


def test_no_private_node_key_is_in_the_repository() -> None:
    for path in (BESU / "keys").rglob("*"):
        if path.is_file():
            assert path.name in {"key.pub", "address"}, f"unexpected file {path.relative_to(ROOT)} (a private key?)"


@pytest.fixture(scope="module")
def allowlist() -> list[str]:
    data = tomllib.loads((BESU / "permissions_config.toml").read_text(encoding="utf-8"))
    nodes = data["nodes-allowlist"]
    assert isinstance(nodes, list)
    return nodes


def test_node_allowlist_is_exactly_the_validators(allowlist: list[str], services: dict[str, dict[str, Any]]) -> None:
    expected = {
        f"enode://{public.hex()}@{chain_ip(services[name])}:{besu_options(services[name])['p2p-port']}"
        for public, name in zip(committed_public_keys(), validators(services), strict=True)
    }
    assert len(allowlist) == VALIDATOR_COUNT
    assert set(allowlist) == expected
    static_nodes = json.loads((BESU / "static-nodes.json").read_text(encoding="utf-8"))
    assert set(static_nodes) == expected


def test_validators_are_permissioned_free_gas_nodes(services: dict[str, dict[str, Any]]) -> None:
    for index, name in enumerate(validators(services), start=1):
        service = services[name]
        options = besu_options(service)
        assert options["min-gas-price"] == "0", name
        assert options["permissions-nodes-config-file-enabled"] == "true", name
        assert options["p2p-host"] == chain_ip(service), f"{name}: advertised host differs from its address"
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"] if v.startswith("./")}
        for option, repo_file in (
            ("genesis-file", "genesis.json"),
            ("permissions-nodes-config-file", "permissions_config.toml"),
            ("static-nodes-file", "static-nodes.json"),
        ):
            assert mounts[options[option]] == f"./deploy/besu/{repo_file}", f"{name}: {option}"
        secrets = {s["target"]: s["source"] for s in service["secrets"]}
        assert options["node-private-key-file"] == "/run/secrets/" + next(iter(secrets))
        assert secrets[next(iter(secrets))] == f"validator_{index}_node_key"


def test_only_api_facing_validators_serve_rpc_to_the_network(services: dict[str, dict[str, Any]]) -> None:
    rpc_hosts = {
        urlsplit(environment(s)["CONSENT_LEDGER_RPC_URL"]).hostname
        for s in services.values()
        if "CONSENT_LEDGER_RPC_URL" in environment(s)
    }
    assert set(hub_services(services)) | set(node_services(services)) <= {
        n for n, s in services.items() if "CONSENT_LEDGER_RPC_URL" in environment(s)
    }
    for name in validators(services):
        options = besu_options(services[name])
        exposed = options.get("rpc-http-enabled") == "true" and options.get("rpc-http-host") not in {
            "127.0.0.1",
            "localhost",
        }
        assert exposed == (name in rpc_hosts), f"{name}: network RPC {'on' if exposed else 'off'}"
        if exposed:
            assert "ADMIN" not in options["rpc-http-api"].split(","), f"{name}: ADMIN API on the network"


def test_generated_files_match_the_generator() -> None:
    generator = load_generator()
    addresses = [generator.address_of(p) for p in committed_public_keys()]
    assert addresses == committed_addresses()
    assert json.loads((BESU / "genesis.json").read_text(encoding="utf-8")) == generator.genesis(addresses)


def test_generator_refuses_to_write_private_keys_into_the_repository() -> None:
    generator = load_generator()
    with pytest.raises(SystemExit, match="inside the repository"):
        generator.new_keys(ROOT / "deploy" / "besu" / "private")


# ---------------------------------------------------------------------------- the hub's and the nodes' wiring


def _target_port_ok(target: str, service: dict[str, Any], port: int) -> None:
    exposed = {int(str(p).split("/")[0]) for p in service.get("expose") or []}
    assert port in exposed, f"port {port} is not among {target}'s exposed ports {sorted(exposed)}"


def _check_rpc(name: str, service: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """CONSENT_LEDGER_RPC_URL names a Besu node of this file that serves JSON-RPC to ``service``."""
    rpc = urlsplit(environment(service)["CONSENT_LEDGER_RPC_URL"])
    assert rpc.scheme == "http" and rpc.hostname in services, f"{name}: RPC host {rpc.hostname}"
    node = services[rpc.hostname]
    assert str(node.get("image", "")).startswith("hyperledger/besu:"), f"{name}: RPC at {rpc.hostname}, not Besu"
    options = besu_options(node)
    assert options.get("rpc-http-enabled") == "true"
    assert options.get("rpc-http-host") not in {"127.0.0.1", "localhost"}, f"{rpc.hostname} serves RPC on loopback"
    assert rpc.port == int(options["rpc-http-port"]), f"{name}: RPC port"
    assert rpc.hostname in options["host-allowlist"].split(","), f"{rpc.hostname} refuses Host {rpc.hostname}"
    _target_port_ok(rpc.hostname, node, rpc.port)
    assert shares_network(service, node), f"{name} cannot reach {rpc.hostname}"


def _check_database(name: str, service: dict[str, Any], services: dict[str, dict[str, Any]]) -> str:
    """CONSENT_LEDGER_DATABASE_URL names a PostgreSQL service of this file with its user, DB and password;
    returns that service's name."""
    env = environment(service)
    db = urlsplit(resolve(env["CONSENT_LEDGER_DATABASE_URL"]))
    assert db.scheme == "postgresql+psycopg", f"{name}: {db.scheme}"
    assert db.hostname in services and str(services[db.hostname]["image"]).startswith("postgres:15")
    pg = {k: resolve(v) for k, v in environment(services[db.hostname]).items()}
    assert db.port == int(pg.get("PGPORT", "5432"))
    assert db.username == pg["POSTGRES_USER"] and db.path.lstrip("/") == pg["POSTGRES_DB"], f"{name}: DB user/name"
    assert db.password is not None and db.password.startswith("from-env-"), f"{name}: DB password not from the env"
    assert pg["POSTGRES_PASSWORD"] == db.password, f"{name}: its DB password is not {db.hostname}'s"
    _target_port_ok(db.hostname, services[db.hostname], db.port)
    assert shares_network(service, services[db.hostname]), f"{name} cannot reach {db.hostname}"
    return db.hostname


def _check_listener(name: str, env: dict[str, str]) -> None:
    assert env["CONSENT_LEDGER_HOST"] == "0.0.0.0"  # noqa: S104 - inside its container, behind the proxy
    assert int(env["CONSENT_LEDGER_PORT"]) == 8000
    assert INTERPOLATION.match(env["CONSENT_LEDGER_PUBLIC_ORIGIN"]), f"{name}: public origin not from the env"
    assert int(env["CONSENT_LEDGER_CONFIRMATIONS"]) >= 1


def test_every_ledger_setting_is_one_the_service_reads(services: dict[str, dict[str, Any]]) -> None:
    """The settings ignore unknown variables, so a misspelt (or invented) one would be dropped in silence."""
    from ledger_service.settings import Settings

    for name, service in services.items():
        for key in environment(service):
            if key.startswith("CONSENT_LEDGER_"):
                field = key[len("CONSENT_LEDGER_") :].lower()
                assert field in Settings.model_fields, f"{name}: {key} is not a setting (ledger_service/settings.py)"


def test_the_hubs_and_nodes_settings_pass_the_services_own_checks(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each hub's, node's and custodian's environment, as the service would read it under `serve`: it parses
    (rate limits included), a hub is handed no provider key and no custodian, a node exactly one key with its
    hub, its chain node and a custody it can form, and a custodian its index in the same custody."""
    from ledger_service.bootstrap import _provider_keys
    from ledger_service.custodian.service import CustodianConfig
    from ledger_service.settings import Settings

    roles: tuple[tuple[Literal["hub", "node", "custodian"], list[str]], ...] = (
        ("hub", hub_services(services)),
        ("node", node_services(services)),
        ("custodian", custodian_services(services)),
    )
    custodies = set()
    for role, names in roles:
        for name in names:
            for key in [k for k in os.environ if k.startswith("CONSENT_LEDGER_")]:
                monkeypatch.delenv(key)
            for key, value in environment(services[name]).items():
                monkeypatch.setenv(key, resolve(value))
            settings = Settings(role=role)  # what `serve hub|node|custodian` sets
            if role == "custodian":
                assert settings.provider_keys is None and settings.rpc_url, name
                assert settings.custodian_index is not None, f"{name}: no CONSENT_LEDGER_CUSTODIAN_INDEX"
                # What custodian_service() builds from these settings, and refuses when inconsistent.
                config = CustodianConfig(
                    index=settings.custodian_index,
                    threshold=settings.custody_threshold,
                    total=settings.custody_total,
                    chain_id=1,
                    ledger="0x" + "00" * 20,
                    from_block=0,
                    confirmations=settings.confirmations,
                )
                assert config.confirmations >= 1, name
                custodies.add((settings.custody_threshold, settings.custody_total))
                continue
            keys = _provider_keys(settings)  # raises for a hub given a key, or a node given none
            if role == "hub":
                assert settings.provider_keys is None and keys == [], name
                assert settings.custodian_urls == [], f"{name}: a hub has no route to a key custodian"
            else:
                assert len(keys) == 1 and settings.hub_url and settings.rpc_url, name
                assert settings.disclosure_mode == "per-read", name
                # ThresholdCustody's own condition: the threshold is met by the custodians the node names.
                assert 2 <= settings.custody_threshold <= len(settings.custodian_urls), name
                custodies.add((settings.custody_threshold, len(settings.custodian_urls)))
    assert len(custodies) == 1, f"the nodes and the custodians disagree on the custody: {sorted(custodies)}"


def test_hub_settings_point_at_services_the_file_defines(services: dict[str, dict[str, Any]]) -> None:
    clients = [*hub_services(services)]
    clients += [n for n, s in services.items() if is_one_shot(s) and "CONSENT_LEDGER_RPC_URL" in environment(s)]
    for name in clients:
        service = services[name]
        env = environment(service)
        _check_rpc(name, service, services)
        if (service.get("command") or [""])[0] == "deploy":
            assert service["command"][1:] == ["--rpc-url", env["CONSENT_LEDGER_RPC_URL"]]
            continue
        _check_database(name, service, services)

        blob = urlsplit(env["CONSENT_LEDGER_BLOB_STORE_URL"])
        assert blob.hostname in services and blob.port is not None, f"{name}: blob store {blob.geturl()}"
        target = services[blob.hostname]
        target_env = environment(target)
        if str(target["image"]).startswith("ipfs/ipfs-cluster:"):
            listen = target_env["CLUSTER_IPFSPROXY_LISTENMULTIADDRESS"]
            assert listen.endswith(f"/tcp/{blob.port}"), f"{name}: blob port {blob.port} vs proxy {listen}"
        else:
            assert str(target["image"]).startswith("ipfs/kubo:") and blob.port == 5001
        _target_port_ok(blob.hostname, target, blob.port)
        assert shares_network(service, target)

        _check_listener(name, env)
        assert "CONSENT_LEDGER_DEPLOYER_KEY" not in env, f"{name}: the admin key belongs to the deployer only"
        assert INTERPOLATION.match(env["CONSENT_LEDGER_RELAYER_KEY"]), f"{name}: the hub relays with its own key"


def test_the_hub_replicas_share_one_deployment_and_one_database(services: dict[str, dict[str, Any]]) -> None:
    hubs = hub_services(services)
    databases = {environment(services[n])["CONSENT_LEDGER_DATABASE_URL"] for n in hubs}
    origins = {environment(services[n])["CONSENT_LEDGER_PUBLIC_ORIGIN"] for n in hubs}
    data = {next(v for v in services[n]["volumes"] if v.endswith(":/data")) for n in hubs}
    assert len(databases) == len(origins) == len(data) == 1, "the hub's replicas are one service"
    deployer = next(s for s in services.values() if is_one_shot(s) and (s.get("command") or [""])[0] == "deploy")
    assert data <= set(deployer["volumes"]), "the hub reads the deployment record the deployer writes"


# ---------------------------------------------------------------------------- keys: the hub's and each node's


PROVIDER_KEY_SETTING = "CONSENT_LEDGER_PROVIDER_KEYS"


def interpolated_names(value: str) -> list[str]:
    return re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", value)


def test_no_hub_holds_a_provider_key(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    """A hub given a provider key refuses to start ("the hub holds no provider key"); none is given one here,
    neither as the setting, nor through an env file, nor as a secret, nor through a node's own variable."""
    node_key_variables = {
        variable
        for name in node_services(services)
        for variable in interpolated_names(environment(services[name])[PROVIDER_KEY_SETTING])
    }
    assert node_key_variables
    for name, service in services.items():
        if name in node_services(services):
            continue
        env = environment(service)
        assert not any("PROVIDER_KEY" in key for key in env), f"{name} has a provider key setting"
        assert "env_file" not in service, f"{name} reads an env file, which could carry a provider key"
        for key, value in env.items():
            leaked = set(interpolated_names(value)) & node_key_variables
            assert not leaked, f"{name}: {key} takes a node's provider key ({', '.join(sorted(leaked))})"
        for secret in service.get("secrets") or []:
            source = secret if isinstance(secret, str) else secret["source"]
            assert "provider" not in source.lower(), f"{name} mounts the secret {source}"
    for name in hub_services(services):
        keys = {k for k in environment(services[name]) if k.endswith(("_KEY", "_KEYS"))}
        assert keys == {"CONSENT_LEDGER_RELAYER_KEY"}, f"{name} holds {sorted(keys)}; a hub holds the relayer's only"


def test_each_node_holds_exactly_its_own_provider_key(services: dict[str, dict[str, Any]]) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    seen: dict[str, str] = {}
    for name in node_services(services):
        service = services[name]
        assert service["command"] == ["serve", "node"], f"{name}: {service['command']}"
        env = environment(service)
        value = env[PROVIDER_KEY_SETTING]
        assert INTERPOLATION.match(value) and ":?" in value, f"{name}: its provider key must be required, from the env"
        (variable,) = interpolated_names(value)
        assert variable not in seen, f"{name} and {seen.get(variable)} share the provider key {variable}"
        seen[variable] = name
        # No other line of the file interpolates that variable: no other service can be handed the key.
        uses = [line for line in text.splitlines() if "${" + variable in line]
        assert len(uses) == 1, f"{variable} is used {len(uses)} times in docker-compose.yml"
        keys = {k for k in env if k.endswith(("_KEY", "_KEYS"))}
        assert keys == {PROVIDER_KEY_SETTING}, f"{name} holds {sorted(keys)}; a node holds its provider's key only"
        assert "env_file" not in service and not service.get("secrets"), f"{name}: keys from elsewhere"
        assert "CONSENT_LEDGER_BLOB_STORE_URL" not in env, f"{name}: a node stores its ciphertext at the hub"
        assert env.get("CONSENT_LEDGER_DISCLOSURE_MODE", "per-read") == "per-read", f"{name}: batched mode is the hub's"
    assert len(seen) == len(node_services(services)) >= 2


def test_each_node_names_its_hub_and_a_chain_node(services: dict[str, dict[str, Any]]) -> None:
    hub_origins = {environment(services[n])["CONSENT_LEDGER_PUBLIC_ORIGIN"] for n in hub_services(services)}
    (proxy,) = proxies(services)
    aliases = proxy["networks"]["edge"].get("aliases") or []
    conf = NGINX_CONF.read_text(encoding="utf-8")
    hub_server = conf[conf.index("listen 443 ssl;") :]
    hub_server = hub_server[: hub_server.index("\n    }\n")]
    for name in node_services(services):
        service = services[name]
        env = environment(service)
        # The hub at its public origin (what its sign-in messages must name), reached through the proxy.
        assert env["CONSENT_LEDGER_HUB_URL"] in hub_origins, f"{name}: hub URL {env['CONSENT_LEDGER_HUB_URL']}"
        assert any(INTERPOLATION.match(a) and "CONSENT_LEDGER_PUBLIC_HOST" in a for a in aliases), (
            "on edge the proxy must answer to the hub's public host, for the nodes"
        )
        assert shares_network(service, proxy), f"{name} cannot reach the proxy"
        assert service["depends_on"]["proxy"]["condition"] == "service_healthy"
        assert "proxy_pass http://consent_api;" in hub_server, "the proxy's :443 is the hub's"
        _check_rpc(name, service, services)
        _check_listener(name, env)
        assert env["CONSENT_LEDGER_PUBLIC_ORIGIN"] not in hub_origins, f"{name}: its origin is the hub's"


def test_each_node_has_its_own_database_and_data(services: dict[str, dict[str, Any]]) -> None:
    hubs, nodes = hub_services(services), node_services(services)
    hub_databases = {_check_database(n, services[n], services) for n in hubs}
    mounts: dict[str, str] = {}
    for name in nodes:
        service = services[name]
        env = environment(service)
        database = _check_database(name, service, services)
        assert database not in hub_databases, f"{name} uses the hub's database"
        db_service = services[database]
        for other in [*hubs, *(n for n in nodes if n != name), *custodian_services(services)]:
            assert not shares_network(db_service, services[other]), f"{other} can reach {name}'s database {database}"
        volumes = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert env["CONSENT_LEDGER_DATA_DIR"] == "/data" and "/data" in volumes, f"{name}: no data volume"
        assert set(volumes) == {"/data"}, f"{name} mounts {sorted(volumes)}: a node keeps everything in its data dir"
        assert volumes["/data"] not in mounts, f"{name} and {mounts.get(volumes['/data'])} share {volumes['/data']}"
        mounts[volumes["/data"]] = name
    for name, service in services.items():
        if name in nodes:
            continue
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            assert source not in mounts, f"{name} mounts {mounts.get(source)}'s volume {source}"


# ---------------------------------------------------------------------------- the key custodians


def _custodian_url(name: str, service: dict[str, Any]) -> str:
    return f"http://{name}:{environment(service)['CONSENT_LEDGER_PORT']}"


def test_every_node_deposits_with_every_custodian_of_the_file(services: dict[str, dict[str, Any]]) -> None:
    """An upload needs every custodian to take its share, so each node names all of them, at addresses it
    reaches (a custodian named twice, or one left out, would split keys among fewer than planned)."""
    custodians = custodian_services(services)
    expected = {_custodian_url(n, services[n]) for n in custodians}
    for name in node_services(services):
        urls = json.loads(environment(services[name])["CONSENT_LEDGER_CUSTODIAN_URLS"])
        assert isinstance(urls, list) and len(urls) == len(set(urls)), f"{name}: {urls}"
        assert set(urls) == expected, f"{name} names the custodians {sorted(urls)}; the file has {sorted(expected)}"
        for url in urls:
            target = urlsplit(url)
            assert target.hostname is not None and target.port is not None
            _target_port_ok(target.hostname, services[target.hostname], target.port)
            assert shares_network(services[name], services[target.hostname]), f"{name} cannot reach {url}"


def test_each_custodian_stands_apart_from_the_hub_and_the_others(services: dict[str, dict[str, Any]]) -> None:
    """A custodian's share, with the hub's data, decrypts nothing; two custodians' shares decrypt everything.
    So no custodian shares a volume with any service or a network with a hub, a blob store, the proxy or
    another custodian; each holds no key of any party and reads the chain through a node of its own; and the
    hub's chain nodes are the chain nodes of fewer custodians than the threshold (a chain node can lie to the
    custodian that trusts it)."""
    hubs, custodians = hub_services(services), custodian_services(services)
    kubos_and_clusters = [n for n, s in services.items() if str(s.get("image", "")).startswith("ipfs/")]
    indexes: dict[int, str] = {}
    chain_nodes: dict[str, str] = {}
    thresholds = set()
    for name in custodians:
        service = services[name]
        env = environment(service)
        assert service["command"] == ["serve", "custodian"], name
        index = int(env["CONSENT_LEDGER_CUSTODIAN_INDEX"])
        assert index not in indexes, f"{name} and {indexes.get(index)} are both custodian {index}"
        indexes[index] = name
        thresholds.add((int(env["CONSENT_LEDGER_CUSTODY_THRESHOLD"]), int(env["CONSENT_LEDGER_CUSTODY_TOTAL"])))
        _check_rpc(name, service, services)
        node = str(urlsplit(env["CONSENT_LEDGER_RPC_URL"]).hostname)
        assert node not in chain_nodes, f"{name} and {chain_nodes.get(node)} read the chain through {node}"
        chain_nodes[node] = name
        assert int(env["CONSENT_LEDGER_CONFIRMATIONS"]) >= 1, f"{name} releases against unconfirmed blocks"
        for other in [*hubs, *kubos_and_clusters, *(n for n in custodians if n != name)]:
            assert not shares_network(service, services[other]), f"{name} shares a network with {other}"
        for proxy in proxies(services):
            assert not shares_network(service, proxy), f"{name} is behind the public proxy"
        assert not service.get("ports"), f"{name} publishes ports"
        # Its data dir on a volume no other service mounts; the deployment record read-only beside it.
        volumes = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert env["CONSENT_LEDGER_DATA_DIR"] == "/data" and set(volumes) == {"/data"}, f"{name}: {volumes}"
        for other, other_service in services.items():
            if other != name:
                sources = {v.split(":", 1)[0] for v in other_service.get("volumes") or []}
                assert volumes["/data"] not in sources, f"{other} mounts {name}'s store {volumes['/data']}"
        targets = {c["target"] for c in service.get("configs") or []}
        assert targets == {"/data/deployment.json"}, f"{name}: the deployment record is mounted at {targets}"
        # No key of any party, no database or blob store of anyone's, no hub.
        keys = [k for k in env if SENSITIVE_NAME.search(k)]
        assert not keys, f"{name} holds {keys}: a custodian's one key is its long-term key, in its data dir"
        assert "env_file" not in service and not service.get("secrets"), f"{name}: keys from elsewhere"
        for setting in ("DATABASE_URL", "BLOB_STORE_URL", "HUB_URL", "CUSTODIAN_URLS"):
            assert f"CONSENT_LEDGER_{setting}" not in env, f"{name}: CONSENT_LEDGER_{setting}"
    assert sorted(indexes) == list(range(1, len(custodians) + 1)), f"custodian indexes {sorted(indexes)}"
    assert len(thresholds) == 1, f"the custodians disagree on the custody: {sorted(thresholds)}"
    ((threshold, total),) = thresholds
    assert total == len(custodians) and 2 <= threshold < total
    hub_chain_nodes = {
        urlsplit(environment(services[n])["CONSENT_LEDGER_RPC_URL"]).hostname
        for n, s in services.items()
        if n in hubs or (is_one_shot(s) and "CONSENT_LEDGER_RPC_URL" in environment(s))
    }
    trusted = sorted(set(chain_nodes) & hub_chain_nodes)
    assert len(trusted) < threshold, f"the hub's chain nodes {trusted} serve {threshold} custodians or more"


def test_metrics_are_on_their_own_port_behind_a_token(services: dict[str, dict[str, Any]]) -> None:
    conf = NGINX_CONF.read_text(encoding="utf-8")
    for name in [*hub_services(services), *node_services(services)]:
        service = services[name]
        env = environment(service)
        public, metrics = int(env["CONSENT_LEDGER_PORT"]), int(env["CONSENT_LEDGER_METRICS_PORT"])
        assert metrics != public, f"{name}: metrics on the public port"
        _target_port_ok(name, service, metrics)
        token = env["CONSENT_LEDGER_METRICS_TOKEN"]
        assert INTERPOLATION.match(token) and ":?" in token, f"{name}: the metrics token must be required"
        assert f"{name}:{metrics}" not in conf, f"the proxy forwards to {name}'s metrics listener"
        assert not service.get("ports"), f"{name} publishes ports"
    assert len(re.findall(r"location\s*=\s*/metrics\s*\{\s*return 404;", conf)) == 2, (
        "every server keeps /metrics closed"
    )


def test_ipfs_is_a_private_swarm_behind_the_cluster(services: dict[str, dict[str, Any]]) -> None:
    kubos = sorted(n for n, s in services.items() if str(s.get("image", "")).startswith("ipfs/kubo:"))
    clusters = sorted(n for n, s in services.items() if str(s.get("image", "")).startswith("ipfs/ipfs-cluster:"))
    init = (DEPLOY / "kubo" / "init-private.sh").read_text(encoding="utf-8")
    assert "ipfs bootstrap rm --all" in init
    for name in kubos:
        env = environment(services[name])
        assert env["LIBP2P_FORCE_PNET"] == "1"
        assert env["SWARM_KEY_SECRET"] == "/run/secrets/ipfs_swarm_key"
        assert "ipfs_swarm_key" in services[name]["secrets"]
        assert any(v.startswith("./deploy/kubo/init-private.sh:/container-init.d/") for v in services[name]["volumes"])
        peers = env["KUBO_PEERS"].split()
        assert set(peers) == set(kubos) - {name}, f"{name} bootstraps with {peers}"
    attached = set()
    for name in clusters:
        env = environment(services[name])
        assert INTERPOLATION.match(env["CLUSTER_SECRET"]), f"{name}: CLUSTER_SECRET is not from the environment"
        node = env["CLUSTER_IPFSHTTP_NODEMULTIADDRESS"]
        match = re.fullmatch(r"/dns4/([a-z0-9-]+)/tcp/5001", node)
        assert match and match.group(1) in kubos, f"{name}: IPFS node {node}"
        attached.add(match.group(1))
    assert attached == set(kubos), "every Kubo node has a cluster peer"
    for name in node_services(services):
        for storage in [*kubos, *clusters]:
            assert not shares_network(services[name], services[storage]), (
                f"{name} reaches {storage}: blobs are the hub's"
            )


def test_nginx_upstream_lists_every_hub_replica(services: dict[str, dict[str, Any]]) -> None:
    conf = NGINX_CONF.read_text(encoding="utf-8")
    upstream = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, flags=re.DOTALL)
    assert upstream, "no upstream block"
    servers = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", upstream.group(2), flags=re.MULTILINE))
    expected = {f"{n}:{environment(services[n])['CONSENT_LEDGER_PORT']}" for n in hub_services(services)}
    assert len(expected) >= 2
    assert servers == expected
    assert f"proxy_pass http://{upstream.group(1)};" in conf
    assert any("./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in s["volumes"] for s in proxies(services))
    for proxy in proxies(services):
        for name in [*hub_services(services), *node_services(services)]:
            assert shares_network(proxy, services[name])
    published = [s for s in services.values() if s.get("ports")]
    assert published == proxies(services), "only the reverse proxy publishes ports"


def test_nginx_serves_each_node_on_a_published_port_of_its_own(services: dict[str, dict[str, Any]]) -> None:
    conf = NGINX_CONF.read_text(encoding="utf-8")
    mapping = re.search(r"map\s+\$server_port\s+\$(\w+)\s*\{(.*?)\}", conf, flags=re.DOTALL)
    assert mapping, "no map from the listening port to a node"
    routes = dict(re.findall(r"^\s*(\d+)\s+([\w.-]+:\d+);", mapping.group(2), flags=re.MULTILINE))
    expected = {f"{n}:{environment(services[n])['CONSENT_LEDGER_PORT']}" for n in node_services(services)}
    assert set(routes.values()) == expected and len(routes) == len(expected), routes
    assert f"proxy_pass http://${mapping.group(1)};" in conf
    assert re.search(r"^\s*resolver\s+127\.0\.0\.11\b", conf, flags=re.MULTILINE), "nodes are resolved per request"
    (proxy,) = proxies(services)
    published = {int(resolve(str(p)).rsplit(":", 1)[1]) for p in proxy["ports"]}
    for port in routes:
        assert f"listen {port} ssl;" in conf, f"the proxy does not listen on {port} with TLS"
        assert int(port) in published, f"port {port} is not published"


def test_hubs_and_nodes_believe_forwarded_headers_from_the_proxy_only(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    from ledger_service.origins import trusted_proxies
    from ledger_service.settings import Settings

    subnet = ipaddress.ip_network(compose["networks"]["edge"]["ipam"]["config"][0]["subnet"])
    addresses = {str(proxy["networks"]["edge"]["ipv4_address"]) for proxy in proxies(services)}
    assert addresses and all(ipaddress.ip_address(a) in subnet for a in addresses)
    conf = NGINX_CONF.read_text(encoding="utf-8")
    assert conf.count("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;") == 2
    assert conf.count("proxy_set_header X-Forwarded-Proto $scheme;") == 2
    for name in [*hub_services(services), *node_services(services)]:
        env = environment(services[name])
        settings = Settings(trusted_proxies=json.loads(env["CONSENT_LEDGER_TRUSTED_PROXIES"]))
        assert set(trusted_proxies(settings)) == addresses, f"{name} trusts {settings.trusted_proxies}"


# ---------------------------------------------------------------------------- secrets


PRIVATE_KEY_HEX = re.compile(r"(?<![0-9a-fA-F])(?:0x)?([0-9a-fA-F]{64})(?![0-9a-fA-F])")
# 64-hex values that are public constants, not keys.
KNOWN_PUBLIC_HEX = {"63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"}  # QBFT mixHash
# A key named *password* given a value that is not an interpolation (keys inside ${...} are skipped).
LITERAL_PASSWORD = re.compile(r"(?<![\w{$])\w*password\s*[:=]\s*(?![\"']?\$\{)[\"']?[^\s\"'{}$]+", re.IGNORECASE)


def scanned_files() -> list[Path]:
    files = [COMPOSE_FILE, ROOT / ".dockerignore"]
    files += [p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files


def test_no_secret_literal_in_compose_or_deploy() -> None:
    for path in scanned_files():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        for match in PRIVATE_KEY_HEX.finditer(text):
            assert match.group(1).lower() in KNOWN_PUBLIC_HEX, f"{rel}: 32-byte hex literal (a private key?)"
        assert "PRIVATE KEY-----" not in text, f"{rel}: PEM private key"
        assert "/key/swarm/psk/" not in text, f"{rel}: an IPFS swarm key"
        assert not LITERAL_PASSWORD.search(text), f"{rel}: literal password"


def test_sensitive_settings_come_from_the_environment(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if key.endswith("_FILE") or (key.endswith("_SECRET") and value.startswith("/run/secrets/")):
                assert value.startswith("/"), f"{name}: {key} should be a path"
                continue
            if SENSITIVE_NAME.search(key):
                assert INTERPOLATION.match(value), f"{name}: {key} is not taken from the environment"
            if "://" in value:
                password = urlsplit(resolve(value)).password
                assert password is None or password.startswith("from-env-"), f"{name}: {key} has a literal password"
    for secret_name, secret in (compose.get("secrets") or {}).items():
        assert "file" in secret or "environment" in secret, secret_name
        if "file" in secret:
            assert secret["file"].startswith("${"), f"secret {secret_name} is a file in the repository"


def test_dockerignore_keeps_secrets_and_build_outputs_out() -> None:
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    for entry in (".git", ".venv", "node_modules", ".env", ".consent-ledger", "ledger_service/chain/artifacts"):
        assert entry in lines, entry
