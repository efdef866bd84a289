"""The peer gates and baselines as presets of one gate, the four-cell table, the soft gate, and
the dense loss refused for gates, all on hand-made inputs."""

import math

import pytest
import torch

from sgopd_lite.config import ConfigError, TrainConfig
from sgopd_lite.gate import CELLS, GateConfig, TokenClass, sign_gate

# Two groups of two rollouts. Group 0: rollout 0 correct, rollout 1 wrong. Group 1: both correct
# (no evidence under a1_mode="group"). Each rollout has a token the teacher pushes up (a2 = +0.5)
# and one it pushes down (a2 = -1.0).
OLD = torch.full((4, 2), -2.0)
TEACHER = OLD + torch.tensor([[0.5, -1.0]] * 4)
R = torch.tensor([1.0, 0.0, 1.0, 1.0])
G = torch.tensor([0, 0, 1, 1])
MASK = torch.ones(4, 2)
A2 = TEACHER - OLD


def gate(cfg):
    return sign_gate(TEACHER, OLD, R, G, MASK, cfg=cfg)


def test_opdvr_is_relu_of_a2_on_correct_and_minus_relu_on_wrong_rollouts():
    out = gate(GateConfig.opdvr())
    expected = torch.where(R[:, None] > 0, A2.clamp(min=0), -(-A2).clamp(min=0))
    torch.testing.assert_close(out.advantage, expected)
    # every verdict counts: the all-correct group 1 is gated too
    assert out.advantage[2].tolist() == [0.5, 0.0]
    assert GateConfig.opdvr().reference == "old"


def test_reversed_gate_swaps_consensus_and_conflict():
    cfg = GateConfig.reversed()
    out = gate(cfg)
    cls = out.token_class
    assert torch.all(out.lambda_t[cls == TokenClass.CONSENSUS] == 1.0)
    assert torch.all(out.lambda_t[(cls == TokenClass.CONFLICT_I) | (cls == TokenClass.CONFLICT_II)] == 1.8)
    assert cfg.a1_mode == GateConfig().a1_mode and cfg.tau == GateConfig().tau
    assert len(TokenClass) == 4
    # the sign gate with the same evidence is the mirror image
    sg = gate(GateConfig())
    assert torch.all(sg.lambda_t[cls == TokenClass.CONSENSUS] == 1.8)


def test_every_method_is_a_point_of_the_four_cell_table():
    table = {
        "opd": (GateConfig.opd(), (1, 1, 1, 1)),
        "exopd": (GateConfig.exopd(1.25), (1.25, 1.25, 1.25, 1.25)),
        "sgopd": (GateConfig.sgopd(), (1.8, 1, 1, 1.8)),
        "opdvr": (GateConfig.opdvr(), (1, 0, 0, 1)),
        "reversed": (GateConfig.reversed(), (1, 1.8, 1.8, 1)),
        "correct_only": (GateConfig.correct_only(), (1, 1, 0, 0)),
    }
    for name, (cfg, cells) in table.items():
        assert tuple(cfg.cells()[c] for c in CELLS) == cells, name


@pytest.mark.parametrize("cell, row, col", [("correct_up", 0, 0), ("correct_down", 0, 1),
                                            ("wrong_up", 1, 0), ("wrong_down", 1, 1)])
def test_each_cell_sets_only_its_own_tokens(cell, row, col):
    out = gate(GateConfig.opd(**{cell: 3.0}))
    expected = torch.ones(4, 2)
    expected[row, col] = 3.0                      # rollout 0 is correct, rollout 1 wrong; group 1 neutral
    torch.testing.assert_close(out.lambda_t, expected)
    torch.testing.assert_close(out.advantage, expected * A2)


def test_notebook_03s_correct_carry_in_a_wrong_rollout():
    # The teacher pushes down a (correct) token of a wrong rollout: "consensus" for the sign gate,
    # so its push down is 1.8x plain OPD's; the wrong_down cell isolates exactly that token.
    opd, sg = gate(GateConfig.opd()), gate(GateConfig())
    assert sg.token_class[1, 1] == TokenClass.CONSENSUS
    assert sg.advantage[1, 1].item() == pytest.approx(1.8 * opd.advantage[1, 1].item())
    spared = gate(GateConfig(wrong_down=1.0))
    assert spared.advantage[1, 1].item() == pytest.approx(opd.advantage[1, 1].item())
    assert spared.advantage[0, 0].item() == pytest.approx(sg.advantage[0, 0].item())   # rest unchanged


def test_soft_gate_weights_evidence_tokens_smoothly():
    k = 3.0
    out = gate(GateConfig.soft(k))
    verdict = torch.tensor([1.0, -1.0, 0.0, 0.0])                         # sign(a1), group mode
    expected = torch.where(verdict[:, None] != 0, 2 * torch.sigmoid(k * verdict[:, None] * A2), torch.ones(4, 2))
    torch.testing.assert_close(out.lambda_t, expected)
    torch.testing.assert_close(out.advantage, expected * A2)
    # a large k tends to the hard gate with lambda_e = 2, lambda_i = 0
    hard = gate(GateConfig(lambda_e=2.0, lambda_i=0.0))
    torch.testing.assert_close(gate(GateConfig.soft(200.0)).lambda_t, hard.lambda_t, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="soft_k replaces the four cells"):
        GateConfig(soft_k=2.0, wrong_up=0.0)


def test_the_soft_gate_reads_the_verdict_not_the_size_of_a1():
    # Group mode: a correct rollout in a group where 1 of 4 passed has a1 = 0.75, in a group where
    # 3 of 4 passed a1 = 0.25. The same teacher push on the same token gets the same weight in both,
    # as in the hard gate (the docs say "sign"; the size of a1 reflects the group, not the token).
    old = torch.full((8, 1), -2.0)
    teacher = old + 0.5                                                   # a2 = +0.5 everywhere
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    out = sign_gate(teacher, old, r, g, torch.ones(8, 1), cfg=GateConfig.soft(4.0))
    assert out.a1[0].item() == pytest.approx(0.75) and out.a1[4].item() == pytest.approx(0.25)
    assert out.lambda_t[0, 0].item() == pytest.approx(out.lambda_t[4, 0].item())
    assert out.lambda_t[0, 0].item() == pytest.approx(2 * torch.sigmoid(torch.tensor(4.0 * 0.5)).item())


@pytest.mark.parametrize("override, words", [({"tau": 0.1}, "tau=0.1 would make it another gate"),
                                             ({"a1_mode": "group"}, "a1_mode='group' would make it another gate"),
                                             ({"truncated": "neutral"}, "truncated='neutral' would make it another gate"),
                                             ({"lambda_n": 0.5}, "lambda_n=0.5 would make it another gate"),
                                             ({"wrong_up": 1.0}, "wrong_up=1.0 would make it another gate")])
def test_opdvr_refuses_overrides_that_make_it_another_gate(override, words):
    with pytest.raises(ValueError, match=words):
        GateConfig.opdvr(**override)
    with pytest.raises(ValueError, match=words):                  # the same through the config
        TrainConfig(method="opdvr", gate=override)
    # what keeps it OPDVR's gate is allowed
    assert GateConfig.opdvr(adv_clip=2.0, truncated="wrong").cells() == GateConfig.opdvr().cells()
    assert TrainConfig(method="opdvr", gate={"a1_mode": "sign", "lambda_i": 0.0}).gate == GateConfig.opdvr()


def test_frac_gated_counts_tokens_off_the_methods_own_base_coefficient():
    # ExOPD scales every token by 1.25 and has no gate: nothing is gated. A gate counts the
    # tokens whose coefficient differs from its neutral one (lambda_n).
    assert gate(GateConfig.exopd(1.25, reference="old")).metrics["frac_gated"] == 0.0
    assert gate(GateConfig.opd()).metrics["frac_gated"] == 0.0
    assert gate(GateConfig()).metrics["frac_gated"] == pytest.approx(2 / 8)    # the 2 consensus tokens at 1.8
    # with lambda_n = 0.5: the 4 evidence tokens (1.8 or 1.0), not the 4 neutral ones (0.5)
    assert gate(GateConfig(lambda_n=0.5)).metrics["frac_gated"] == pytest.approx(4 / 8)


def test_cells_are_validated():
    with pytest.raises(ValueError, match="correct_up must be >= 0"):
        GateConfig(correct_up=-1.0)
    with pytest.raises(ValueError, match="wrong_down must be a finite number"):
        GateConfig(wrong_down=math.inf)


@pytest.mark.parametrize("method, cells", [("opdvr", (1, 0, 0, 1)), ("reversed_gate", (1, 1.8, 1.8, 1)),
                                           ("gate_only", (1.8, 1, 1, 1.8))])
def test_method_presets(method, cells):
    cfg = TrainConfig(method=method)
    assert tuple(cfg.gate.cells()[c] for c in CELLS) == cells
    assert not cfg.pts.enabled
    assert TrainConfig(method="soft_gate").gate.soft_k == 4.0


@pytest.mark.parametrize("method", ["gate_only", "sgopd", "opdvr", "reversed_gate", "soft_gate"])
def test_a_gate_with_the_dense_loss_is_refused(method):
    with pytest.raises(ConfigError, match="^loss_type: .*cannot express"):
        TrainConfig(method=method, loss_type="dense")


def test_opd_and_pts_only_may_use_the_dense_loss():
    TrainConfig(method="opd", loss_type="dense")
    TrainConfig(method="pts_only", loss_type="dense")
    TrainConfig(method="opd", loss_type="dense", gate={"lambda_e": 1.5, "lambda_i": 1.5, "lambda_n": 1.5})


# ---------------------------------------------------------------- overrides of what defines a preset

def _warnings_of(**kw) -> list[str]:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TrainConfig(**kw)
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_every_method_names_the_fields_that_define_it():
    from dataclasses import fields

    from sgopd_lite.config import METHODS, PRESET_DEFINES
    from sgopd_lite.scheduler import PTSConfig

    assert set(PRESET_DEFINES) == set(METHODS)        # a new preset must add its line
    known = {f"gate.{f.name}" for f in fields(GateConfig)} | {f"pts.{f.name}" for f in fields(PTSConfig)}
    for method, keys in PRESET_DEFINES.items():
        assert set(keys) <= known, method


@pytest.mark.parametrize("method, override, was", [
    ("opd", {"gate": {"lambda_e": 1.5}}, "gate.lambda_e=1 in opd"),
    ("opd", {"pts": {"enabled": True}}, "pts.enabled=false in opd"),
    ("step_gate", {"gate": {"a1_mode": "group"}}, "gate.a1_mode=sign in step_gate"),   # opdvr itself refuses (gate.opdvr)
    ("first_error_gate", {"gate": {"swapped": True}}, "gate.swapped=false in first_error_gate"),
    ("exopd", {"gate": {"lambda_i": 1.0}}, "gate.lambda_i=1.25 in exopd"),
    ("gate_only", {"pts": {"enabled": True}}, "pts.enabled=false in gate_only"),
    ("sgopd", {"gate": {"swapped": True}}, "gate.swapped=false in sgopd"),
])
def test_an_override_that_redefines_the_preset_gets_one_line_naming_both(method, override, was):
    said = [m for m in _warnings_of(method=method, **override) if "defines this preset" in m]
    key, value = next((f"{g}.{k}", v) for g, d in override.items() for k, v in d.items())
    shown = {True: "true", False: "false"}[value] if isinstance(value, bool) else f"{value:g}" if isinstance(
        value, float) else value
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith(f"method={method}: the override {key}={shown} ") and was in said[0]


@pytest.mark.parametrize("method, override", [
    ("gate_only", {"gate": {"lambda_i": 0.5, "lambda_e": 1.4, "a1_mode": "sign", "tau": 0.5}}),  # its knobs
    ("sgopd", {"gate": {"wrong_down": 1.0}, "pts": {"k1": 10, "rho": 0.5}}),
    ("pts_only", {"pts": {"w0": 2.0, "m": 8}}),
    ("exopd", {"exopd_lambda": 1.8}),
    ("soft_gate", {"gate": {"soft_k": 8.0}}),
    ("opdvr", {"gate": {"correct_down": 0.0, "lambda_i": 0.0}}),   # the preset's own values
    ("opd", {"gate": {"reference": "initial", "a1_mode": "sign"}}),  # no effect on OPD's advantage
])
def test_a_methods_own_knobs_are_not_an_override_of_the_preset(method, override):
    assert not [m for m in _warnings_of(method=method, **override) if "defines this preset" in m]


def test_the_documented_commands_keep_their_methods():
    """Every `train` / `sweep` command in the docs and config comments builds its configs without
    a preset warning, while the example they used to give (`method=opd gate.lambda_e=1.5`) warns."""
    import re
    import warnings
    from pathlib import Path

    from sgopd_lite.config import load_config

    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", *root.glob("docs/*.md"), *root.glob("configs/*.yaml"), *root.glob("configs/worlds/*.yaml"),
             *root.glob("notebooks/*.py")]
    commands = [m.group(1) for p in pages for m in re.finditer(r"sgopd_lite (?:train|sweep) ([^\n`]*)", p.read_text())]
    assert len(commands) >= 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for command in commands:
            words = command.split()
            overrides = [w for w in words if re.match(r"^(method=[a-z_]+|(gate|pts)\.\w+=[^,:]+)$", w)]
            config = words[words.index("--config") + 1] if "--config" in words else None
            load_config(root / config if config and (root / config).is_file() else None, overrides)
        assert not [str(w.message) for w in caught if "defines this preset" in str(w.message)], commands
        load_config(None, ["method=opd", "gate.lambda_e=1.5"])
        assert [w for w in caught if "defines this preset" in str(w.message)]


@pytest.mark.parametrize("override", [{"a1_mode": "group"}, {"tau": 0.2}, {"correct_down": 0.5}])
def test_opdvr_refuses_what_the_other_presets_only_warn_about(override):
    from sgopd_lite.config import ConfigError

    with pytest.raises((ValueError, ConfigError), match="another gate"):
        TrainConfig(method="opdvr", gate=dict(override))
