"""Impairments, networks and profiles as data: settings, their checks, and what --list shows."""

from __future__ import annotations

import pytest

from chatlab.sim.network import PROFILES, Impairment, Network, NetworkError, describe_profiles, get_profile


def test_the_named_profiles_are_all_there():
    assert {"lan", "wifi", "mobile", "satellite", "flaky", "fragmenting"} <= set(PROFILES)


def test_a_default_impairment_is_a_perfect_wire():
    assert Impairment().settings() == {}
    assert Impairment().describe() == "perfect"


def test_the_list_shows_every_profile_with_its_exact_parameters():
    listing = describe_profiles()
    for network in PROFILES.values():
        assert network.description, f"{network.name} says nothing about itself"
        assert f"up   {network.up.describe()}" in listing and f"down {network.down.describe()}" in listing
        for impairment in (network.up, network.down):
            for name in impairment.settings():
                assert f"{name}=" in impairment.describe()


def test_settings_apply_to_both_directions_or_one():
    network = get_profile("lan").with_settings(["latency=0.25", "down.fragment=1,8", "up.fault=reset", "up.fault_after=100"])
    assert network.up.latency == network.down.latency == 0.25
    assert network.down.fragment == (1, 8) and network.up.fragment == (0, 0)
    assert network.up.fault == "reset" and network.up.fault_after == (100, 100) and network.down.fault == ""
    assert get_profile("flaky").with_settings(["fault="]).down.fault == ""


@pytest.mark.parametrize(
    "setting, message",
    [
        ("latency", "KEY=VALUE"),
        ("speed=3", "unknown setting 'speed'"),
        ("sideways.latency=1", "'up' or 'down'"),
        ("latency=fast", "expected a number"),
        ("latency=nan", "expected a number"),
        ("latency=-1", "0 or more"),
        ("fragment=8,1", "LOW <= HIGH"),
        ("fragment=1,2,3", "LOW,HIGH"),
        ("fragment=0,4", "at least 1 byte"),
        ("cut_in_char=2", "probability"),
        ("jitter_distribution=pareto", "uniform, normal"),
        ("fault=explode", "reset, half-close, mid-line"),
        ("stall_every=2", "stall_for must be longer than 0"),
    ],
)
def test_a_bad_setting_says_what_is_wrong(setting, message):
    with pytest.raises(NetworkError, match=message):
        get_profile("lan").with_settings([setting])


def test_an_unknown_profile_lists_the_known_ones():
    with pytest.raises(NetworkError, match="choose one of lan, wifi"):
        get_profile("dialup")


def test_a_network_picks_its_direction():
    up, down = Impairment(latency=1.0), Impairment(latency=2.0)
    network = Network("custom", up, down)
    assert network.direction("up") is up and network.direction("down") is down


def test_the_examples_in_the_docstrings_run():
    import doctest

    import chatlab.sim.network
    import chatlab.sim.shaper

    for module in (chatlab.sim.network, chatlab.sim.shaper):
        outcome = doctest.testmod(module)
        assert outcome.attempted > 0 and outcome.failed == 0, module.__name__
