"""Strict inputs: every way of building a campaign is checked by one schema, before any work.

Fast: nothing here runs a campaign.
"""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from dataclasses import asdict, replace

import numpy as np
import pytest
from click.testing import CliRunner

from benchsuite.campaign import (
    DEFAULT_CAMPAIGN_BUDGET,
    PACKAGED,
    Campaign,
    CampaignError,
    campaign_from_dict,
    load_campaign,
    parse_spec,
    select_integrators,
)
from benchsuite.cli import main
from benchsuite.harness import MAX_EXTEND, Budget, Recording
from benchsuite.integrator import Integrator, require_positive
from benchsuite.plugins import load_registry
from benchsuite.schema import CampaignSchema
from benchsuite_plugins.euler import ExplicitEuler
from benchsuite_plugins.proximal import ProximalPoint
from benchsuite_plugins.runge_kutta import DormandPrince
from benchsuite_plugins.scipy_ivp import ScipyIVP


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# -- campaign files: each bad value is refused, naming the file, the field, the allowed range
# and the value given ---

BAD_FILES = [
    # (file text, field named, allowed range as written, value as shown)
    ("[recording]\nper_octave = 1000000000000\n", "recording per_octave", "between 1 and 64",
     "1000000000000"),
    ("[recording]\nper_octave = \"x\"\n", "recording per_octave", "integer between 1 and 64",
     "'x'"),
    ("[recording]\nper_octave = -3\n", "recording per_octave", "between 1 and 64", "-3"),
    ("[recording]\nper_octave = 2.0\n", "recording per_octave", "integer between 1 and 64",
     "2.0"),
    ("[recording]\nt_min = 0\n", "recording t_min", "between 1e-12 and 1000", "0"),
    ("[recording]\nt_min = 1e4\n", "recording t_min", "between 1e-12 and 1000", "10000.0"),
    ("[budget]\nt_max = 1e308\n", "budget t_max", "> 0 and <= 1e9", "1e+308"),
    ("[budget]\nt_max = 0\n", "budget t_max", "> 0 and <= 1e9", "0"),
    ("[budget]\nt_max = nan\n", "budget t_max", "finite number > 0 and <= 1e9", "nan"),
    ("[budget]\nt_max = inf\n", "budget t_max", "finite number > 0 and <= 1e9", "inf"),
    ("[budget]\nt_max = true\n", "budget t_max", "number > 0 and <= 1e9", "True"),
    ("[budget]\nt_max = \"20\"\n", "budget t_max", "number > 0 and <= 1e9", "'20'"),
    ("[budget]\nmax_steps = 10.5\n", "budget max_steps", "integer between 1 and 10^9", "10.5"),
    ("[budget]\nmax_steps = 2000000000\n", "budget max_steps", "between 1 and 10^9",
     "2000000000"),
    ("[budget]\nmax_evals = 0\n", "budget max_evals", "between 1 and 10^12", "0"),
    ("[budget]\nmax_evals = true\n", "budget max_evals", "integer between 1 and 10^12", "True"),
    ("[budget]\nwall_time = 604801\n", "budget wall_time", "<= 604800", "604801"),
    ("[budget]\nwall_time = true\n", "budget wall_time", "> 0 and <= 604800", "True"),
    ("[budget]\nextend = 11\n", "budget extend", f"between 0 and {MAX_EXTEND}", "11"),
    ("[budget]\nextend = 1.0\n", "budget extend", f"integer between 0 and {MAX_EXTEND}", "1.0"),
    ("n_points = true\n", "n_points", "integer between 1 and 10^7", "True"),
    ("n_points = 10.0\n", "n_points", "integer between 1 and 10^7", "10.0"),
    ("n_points = 10000001\n", "n_points", "between 1 and 10^7", "10000001"),
    ("seed = -1\n", "seed", "between 0 and 2^63 - 1", "-1"),
    ("seed = false\n", "seed", "integer between 0 and 2^63 - 1", "False"),
    ("certificates = 1\n", "certificates", "true or false", "1"),
    ("problems = [\"a\", 3]\n", "problems[1]", "non-empty string", "3"),
    ("integrators = [\"\"]\n", "integrators[0]", "non-empty string", "''"),
    (f"integrators = [\"{'x' * 10_001}\"]\n", "integrators[0]", "at most 10000 characters", "'xxx"),
    ("integrators = []\n", "integrators", "non-empty list of non-empty strings", "[]"),
    ("budget = 5\n", "[budget]", "table with keys among", "5"),
]


@pytest.mark.parametrize(("text", "field", "allowed", "shown"), BAD_FILES)
def test_bad_values_are_refused_naming_file_field_range_and_value(tmp_path, text, field,
                                                                  allowed, shown):
    with pytest.raises(CampaignError) as info:
        load_campaign(write(tmp_path, text))
    message = str(info.value)
    assert message.startswith(str(tmp_path / "c.toml") + ": "), message
    assert "\n" not in message  # one bad entry, one line
    assert f"{field} must be" in message, message
    assert allowed in message, message
    assert f"(got {shown}" in message, message


@pytest.mark.parametrize(("text", "unknown", "allowed"), [
    ("n_point = 3\n", "['n_point']", "'n_points'"),
    ("[budget]\nsteps = 3\n", "['steps']", "'max_steps'"),
    ("[recording]\nper_octav = 3\n", "['per_octav']", "'per_octave'"),
])
def test_unknown_keys_are_refused_with_the_allowed_ones(tmp_path, text, unknown, allowed):
    with pytest.raises(CampaignError, match=re.escape(f"unknown key(s) {unknown}")) as info:
        load_campaign(write(tmp_path, text))
    assert allowed in str(info.value)


def test_every_bad_entry_is_listed_in_one_message(tmp_path):
    with pytest.raises(CampaignError) as info:
        load_campaign(write(tmp_path, """
            n_points = 0
            bogus = 1
            [budget]
            t_max = 1e308
            [recording]
            per_octave = "x"
        """))
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'c.toml'}: 4 invalid entries")
    for fragment in ("n_points must be", "['bogus']", "budget t_max must be",
                     "recording per_octave must be"):
        assert message.count(fragment) == 1, message


@pytest.mark.parametrize("text", ["problems = " + "[" * 10_000,
                                  "problems = " + "[" * 10_000 + "]" * 10_000,
                                  "[budget]\nt_max = " + "{a = " * 10_000])
def test_deeply_nested_files_are_refused_not_crashed_on(tmp_path, text):
    with pytest.raises(CampaignError, match="nested too deeply") as info:
        load_campaign(write(tmp_path, text))
    assert str(info.value).startswith(str(tmp_path / "c.toml"))


def test_deeply_nested_integrator_specs_are_refused():
    with pytest.raises(CampaignError, match="nested too deeply"):
        parse_spec("euler(h=" + "[" * 10_000 + "0.1" + "]" * 10_000 + ")")


# -- valid edge values are accepted, and mean what they say ---

@pytest.mark.parametrize(("text", "check"), [
    ("[budget]\nt_max = 1e9\n", lambda c: c.budget.t_max == 1e9),
    ("[budget]\nt_max = 200\n", lambda c: c.budget.t_max == 200.0
     and isinstance(c.budget.t_max, float)),
    ("[budget]\nmax_steps = 1000000000\nmax_evals = 1000000000000\n",
     lambda c: c.budget.max_steps == 10**9 and c.budget.max_evals == 10**12),
    ("[budget]\nwall_time = 604800\n", lambda c: c.budget.wall_time == 604800.0),
    (f"[budget]\nextend = {MAX_EXTEND}\n", lambda c: c.budget.extend == MAX_EXTEND),
    ("[recording]\nper_octave = 64\n", lambda c: c.recording.per_octave == 64),
    ("[recording]\nper_octave = 1\nt_min = 1e-12\n",
     lambda c: c.recording == Recording(per_octave=1, t_min=1e-12)),
    ("[recording]\nt_min = 1000\n", lambda c: c.recording.t_min == 1e3),
    ("n_points = 10000000\nseed = 9223372036854775807\n",
     lambda c: c.n_points == 10**7 and c.seed == 2**63 - 1),
    ("problems = \"xy*\"\ncertificates = false\n",
     lambda c: c.problems == ("xy*",) and c.certificates is False),
])
def test_valid_edge_values_are_accepted(tmp_path, text, check):
    assert check(load_campaign(write(tmp_path, text)))


def test_defaults_are_unchanged():
    assert campaign_from_dict({}) == Campaign()
    assert Campaign().budget == DEFAULT_CAMPAIGN_BUDGET and Campaign().recording == Recording()
    # a [budget] section fills the keys it leaves out from Budget's own defaults
    assert campaign_from_dict({"budget": {"t_max": 5.0}}).budget == Budget(t_max=5.0)
    schema = CampaignSchema()
    assert schema.budget.model_dump() == asdict(DEFAULT_CAMPAIGN_BUDGET)
    assert schema.recording.model_dump() == asdict(Recording())
    assert {k: getattr(schema, k) for k in ("problems", "integrators", "n_points", "seed",
                                            "certificates")} == \
        {k: getattr(Campaign(), k) for k in ("problems", "integrators", "n_points", "seed",
                                             "certificates")}


@pytest.mark.parametrize("path", sorted(PACKAGED.glob("*.toml")), ids=lambda p: p.stem)
def test_packaged_campaigns_load_and_round_trip_through_a_manifest(path):
    campaign = load_campaign(path)
    assert load_campaign(path.stem) == campaign
    # the manifest stores asdict(campaign) as JSON, and --resume reads it back
    again = campaign_from_dict(json.loads(json.dumps(asdict(campaign))), source="manifest")
    assert again == campaign


# -- the Python API and dataclasses.replace go through the same schema ---

@pytest.mark.parametrize(("kwargs", "field"), [
    ({"n_points": True}, "n_points"),
    ({"n_points": 0}, "n_points"),
    ({"n_points": 4.0}, "n_points"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"certificates": "yes"}, "certificates"),
    ({"problems": ()}, "problems"),
    ({"integrators": ("euler", 3)}, "integrators[1]"),
    ({"budget": Budget(t_max=1e308)}, "budget t_max"),
    ({"budget": Budget(max_steps=10**10)}, "budget max_steps"),
    ({"budget": Budget(max_evals=True)}, "budget max_evals"),  # Budget takes True as 1
    ({"budget": {"t_max": True}}, "budget t_max"),
    ({"recording": Recording(per_octave=10**12)}, "recording per_octave"),
    ({"recording": Recording(t_min=0.0)}, "recording t_min"),
    ({"recording": Recording(per_octave="x")}, "recording per_octave"),
    ({"budget": 5}, "[budget]"),
])
def test_python_api_is_checked_by_the_same_schema(kwargs, field):
    with pytest.raises(CampaignError, match=re.escape(f"{field} must be")):
        Campaign(**kwargs)


def test_command_line_style_replace_is_checked():
    base = Campaign()
    with pytest.raises(CampaignError, match=r"budget t_max must be .*<= 1e9"):
        replace(base, budget=replace(base.budget, t_max=1e308))
    with pytest.raises(CampaignError, match="n_points must be"):
        replace(base, n_points=10**8)
    ok = replace(base, n_points=5, budget=replace(base.budget, t_max=1e9))
    assert ok.n_points == 5 and ok.budget.t_max == 1e9


def test_values_are_normalized_to_plain_python():
    c = Campaign(problems=["xy*"], integrators="euler", n_points=np.int64(5),
                 budget=Budget(t_max=3), recording={"per_octave": 4})
    assert c.problems == ("xy*",) and c.integrators == ("euler",)
    assert type(c.n_points) is int and type(c.budget.t_max) is float
    assert c.recording == Recording(per_octave=4)
    json.dumps(asdict(c))  # a manifest can hold it


def test_extended_budgets_may_exceed_the_campaign_limits():
    # Budget.scaled (the --extend re-runs) is a runtime budget, not a campaign
    assert Budget(t_max=1e9, max_steps=10**9).scaled(2**MAX_EXTEND).t_max == 1e9 * 2**MAX_EXTEND


# -- integrator hyperparameters: the type of the default ---

@pytest.mark.parametrize(("integrator", "params", "message"), [
    (ExplicitEuler(), {"h": True}, "euler: hyperparameter h must be a number, got True"),
    (ExplicitEuler(), {"h": "0.1"}, "euler: hyperparameter h must be a number, got '0.1'"),
    (ExplicitEuler(), {"h": [0.1]}, "euler: hyperparameter h must be a number, got [0.1]"),
    (ProximalPoint(), {"max_inner": 10.5}, "hyperparameter max_inner must be an integer, got 10.5"),
    (ProximalPoint(), {"max_inner": False}, "hyperparameter max_inner must be an integer"),
    (ProximalPoint(), {"memory": float("inf")}, "hyperparameter memory must be an integer"),
    (ScipyIVP(), {"method": 45}, "scipy_ivp: hyperparameter method must be a string, got 45"),
    (DormandPrince(), {"max_step": True}, "rk45: hyperparameter max_step must be a number"),
])
def test_hyperparameters_must_have_the_type_of_their_default(integrator, params, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        integrator.with_params(**params)


def test_hyperparameters_of_the_right_type_are_kept_or_converted():
    assert ExplicitEuler().with_params(h=1).h == 1  # an int is a number
    proximal = ProximalPoint().with_params(max_inner=50.0)
    assert proximal.max_inner == 50 and type(proximal.max_inner) is int
    assert DormandPrince().with_params(fixed_step=0.1).fixed_step == 0.1  # None default: no check
    with pytest.raises(ValueError, match="fixed_step must be a finite number > 0"):
        DormandPrince().with_params(fixed_step=True)  # ... but require_positive refuses bools


@dataclasses.dataclass(frozen=True)
class ThirdParty(Integrator):
    """A plugin's integrator with a flag (the check is generic over dataclass fields)."""

    flag: bool = True
    steps: int = 3
    name = "third_party"
    requires = frozenset({"grad"})

    def init(self, oracle, x0):  # pragma: no cover - never run
        raise NotImplementedError

    def step(self, oracle, state):  # pragma: no cover - never run
        raise NotImplementedError


def test_the_type_check_is_generic_over_plugin_dataclasses():
    assert ThirdParty().with_params(flag=False).flag is False
    with pytest.raises(TypeError, match="third_party: hyperparameter flag must be a boolean"):
        ThirdParty().with_params(flag=1)
    with pytest.raises(TypeError, match="steps must be an integer, got True"):
        ThirdParty().with_params(steps=True)


@pytest.mark.parametrize("value", [True, False, 0, -1.0, float("nan"), float("inf"), "1"])
def test_require_positive_refuses_non_positive_and_non_numbers(value):
    with pytest.raises(ValueError, match="hyperparameter h must be a finite number > 0"):
        require_positive("euler", h=value)


def test_bad_hyperparameters_in_a_spec_are_campaign_errors():
    with pytest.raises(CampaignError, match=re.escape("'euler(h=true)'")):
        select_integrators(load_registry(), ["euler(h=true)"])


# -- the command line refuses them before any work (exit 2, no run folder) ---

@pytest.mark.parametrize(("args", "message"), [
    (["--t-max", "1e308"], "t_max must be a finite number > 0 and <= 1e9"),
    (["--wall-time", "1e7"], "wall_time must be a finite number > 0 and <= 604800"),
    (["-n", "100000000"], "n_points must be between 1 and 10^7"),
    (["-i", "euler(h=true)"], "hyperparameter h must be a number, got True"),
])
def test_cli_refuses_bad_inputs_before_any_work(tmp_path, args, message):
    results = tmp_path / "results"
    out = CliRunner().invoke(main, ["run", "-p", "xy_minus_one", "-i", "euler", *args,
                                    "--results-dir", str(results), "--no-progress"])
    assert out.exit_code == 2, out.output
    assert message in out.output
    assert not results.exists() or not any(results.iterdir())
