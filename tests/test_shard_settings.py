"""The bar shard list every service reads: its rule, its checks, and what each service takes from it."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import pytest

from tickmesh.analytics.settings import AnalyticsSettings
from tickmesh.bars.settings import BarsSettings
from tickmesh.collector.settings import CollectorSettings
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.settings import CommonSettings, SettingsError, load_settings
from tickmesh.core.sharding import parse_shard_addresses, shard_address, shard_of
from tickmesh.gateway.settings import GatewaySettings

TWO = "bars-0.shards:50052,bars-1.shards:50052"


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No TICKMESH_* variable of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("TICKMESH_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_shard_of_is_crc32_of_the_instrument_text_mod_n() -> None:
    for text in ("binance_usdm:BTCUSDT", "binance_spot:BTCUSDT", "yahoo:AAPL", "yahoo:^GSPC"):
        assert shard_of(InstrumentId.parse(text), 7) == zlib.crc32(text.encode()) % 7
    # Fixed values, so a client in another language can check its own implementation.
    assert zlib.crc32(b"binance_usdm:BTCUSDT") == 0xB2973838
    assert shard_of(InstrumentId.parse("binance_usdm:BTCUSDT"), 7) == 0xB2973838 % 7
    assert shard_of(InstrumentId.parse("binance_spot:ETHUSDT"), 2) == 1


def test_shard_address_picks_the_entry_of_the_instruments_shard() -> None:
    addresses = parse_shard_addresses(" a:1 , b:2,c:3 ")
    assert addresses == ("a:1", "b:2", "c:3")
    for text in ("binance_usdm:BTCUSDT", "binance_spot:BTCUSDT", "binance_spot:SOLUSDT"):
        instrument = InstrumentId.parse(text)
        assert shard_address(instrument, addresses) == addresses[shard_of(instrument, 3)]


def test_one_address_is_the_one_shard_case(environment: pytest.MonkeyPatch) -> None:
    assert load_settings(CommonSettings).bar_shard_addresses == ("127.0.0.1:50052",)
    environment.setenv("TICKMESH_BARS_ADDRESS", "bars:50052")
    assert load_settings(CommonSettings).bar_shard_addresses == ("bars:50052",)


def test_address_list_is_read_in_shard_order(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("TICKMESH_BARS_ADDRESSES", TWO)
    settings = load_settings(GatewaySettings)
    assert settings.bar_shard_addresses == ("bars-0.shards:50052", "bars-1.shards:50052")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a:1,,b:2", "address 1 .* is not host:port"),
        ("a:1,b", "address 1 .* is not host:port"),
        ("a:1,b:99999", "address 1 .* is not host:port"),
        ("a:1,a:1", "each shard needs its own address; a:1 repeats"),
        (",".join(f"h{i}:1" for i in range(1025)), "list 1 to 1024"),
    ],
)
def test_malformed_address_list_names_the_variable(
    environment: pytest.MonkeyPatch, value: str, reason: str
) -> None:
    environment.setenv("TICKMESH_BARS_ADDRESSES", value)
    with pytest.raises(SettingsError, match=rf"^TICKMESH_BARS_ADDRESSES: {reason}"):
        load_settings(CommonSettings)


def test_both_address_variables_are_refused(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("TICKMESH_BARS_ADDRESS", "a:1")
    environment.setenv("TICKMESH_BARS_ADDRESSES", "a:1,b:2")
    with pytest.raises(SettingsError, match="TICKMESH_BARS_ADDRESS and TICKMESH_BARS_ADDRESSES"):
        load_settings(CommonSettings)


def test_collector_shard_publishes_to_the_bar_shard_of_its_index(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("TICKMESH_BARS_ADDRESSES", TWO)
    environment.setenv("TICKMESH_COLLECTOR_SHARD_COUNT", "2")
    for index in range(2):
        environment.setenv("TICKMESH_COLLECTOR_SHARD_INDEX", str(index))
        settings = load_settings(CollectorSettings)
        assert settings.ingest_address == f"bars-{index}.shards:50052"


@pytest.mark.parametrize(("count", "addresses"), [("3", TWO), ("2", "bars:50052")])
def test_collector_shard_count_other_than_bar_shards_is_refused(
    environment: pytest.MonkeyPatch, count: str, addresses: str
) -> None:
    environment.setenv("TICKMESH_COLLECTOR_SHARD_COUNT", count)
    variable = "TICKMESH_BARS_ADDRESSES" if "," in addresses else "TICKMESH_BARS_ADDRESS"
    environment.setenv(variable, addresses)
    with pytest.raises(SettingsError, match=rf"^TICKMESH_COLLECTOR_SHARD_COUNT \({count}\) must"):
        load_settings(CollectorSettings)


def test_bar_shard_count_must_match_a_given_list(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("TICKMESH_BARS_SHARD_COUNT", "2")
    assert load_settings(BarsSettings).bars_shard_count == 2  # no list: nothing to compare
    environment.setenv("TICKMESH_BARS_ADDRESSES", "a:1,b:2,c:3")
    with pytest.raises(SettingsError, match=r"^TICKMESH_BARS_SHARD_COUNT \(2\) must equal"):
        load_settings(BarsSettings)


def test_analytics_keeps_a_resume_point_per_bar_shard(environment: pytest.MonkeyPatch) -> None:
    assert load_settings(AnalyticsSettings).resume_point_names == ("analytics",)
    environment.setenv("TICKMESH_BARS_ADDRESSES", TWO)
    assert load_settings(AnalyticsSettings).resume_point_names == (
        "analytics:bars-0-of-2",
        "analytics:bars-1-of-2",
    )


def test_analytics_shard_consumes_its_own_bar_shard(environment: pytest.MonkeyPatch) -> None:
    environment.setenv("TICKMESH_BARS_ADDRESSES", TWO)
    assert load_settings(AnalyticsSettings).consumed_bar_shards == (0, 1)  # one consumes all
    environment.setenv("TICKMESH_ANALYTICS_SHARD_COUNT", "2")
    environment.setenv("TICKMESH_ANALYTICS_ADDRESSES", "analytics-0:50053,analytics-1:50053")
    environment.setenv("TICKMESH_ANALYTICS_SHARD_INDEX", "1")
    settings = load_settings(AnalyticsSettings)
    assert settings.consumed_bar_shards == (1,)
    assert settings.resume_point_names[1] == "analytics:bars-1-of-2"
    instrument = InstrumentId.parse("binance_spot:ETHUSDT")
    assert settings.shard.owns(instrument) == (shard_of(instrument, 2) == 1)
    assert settings.analytics_shard_addresses == ("analytics-0:50053", "analytics-1:50053")


@pytest.mark.parametrize(
    ("variables", "reason"),
    [
        (
            {"TICKMESH_ANALYTICS_SHARD_COUNT": "3"},
            r"^TICKMESH_ANALYTICS_SHARD_COUNT \(3\) must be 1 or equal the number of bar shards",
        ),
        (
            {"TICKMESH_ANALYTICS_SHARD_COUNT": "2", "TICKMESH_ANALYTICS_SHARD_INDEX": "2"},
            r"^TICKMESH_ANALYTICS_SHARD_INDEX \(2\) must be below",
        ),
        (
            {"TICKMESH_ANALYTICS_SHARD_COUNT": "2", "TICKMESH_ANALYTICS_ADDRESSES": "a:1"},
            r"^TICKMESH_ANALYTICS_SHARD_COUNT \(2\) must equal the number of addresses",
        ),
        (
            {"TICKMESH_ANALYTICS_ADDRESSES": "a:1,b:2,c:3"},
            r"^TICKMESH_ANALYTICS_ADDRESSES lists 3 shards and TICKMESH_BARS_ADDRESSES 2",
        ),
        (
            {"TICKMESH_ANALYTICS_ADDRESSES": "a:1,b:2", "TICKMESH_ANALYTICS_ADDRESS": "a:1"},
            "TICKMESH_ANALYTICS_ADDRESS and TICKMESH_ANALYTICS_ADDRESSES are both set",
        ),
    ],
)
def test_analytics_shards_that_do_not_pair_with_the_bar_shards_are_refused(
    environment: pytest.MonkeyPatch, variables: dict[str, str], reason: str
) -> None:
    environment.setenv("TICKMESH_BARS_ADDRESSES", TWO)
    for name, value in variables.items():
        environment.setenv(name, value)
    with pytest.raises(SettingsError, match=reason):
        load_settings(AnalyticsSettings)


def test_collector_with_unpaired_shards_exits_2_naming_the_variable() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TICKMESH_")}
    environment |= {"TICKMESH_BARS_ADDRESSES": TWO, "TICKMESH_COLLECTOR_SHARD_COUNT": "3"}
    result = subprocess.run(
        [sys.executable, "-m", "tickmesh.collector"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "TICKMESH_COLLECTOR_SHARD_COUNT (3) must equal the number of bar shards (2" in line
