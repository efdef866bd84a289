"""study/channels.py: where the teacher's forgotten borrow reaches the student, on hand-made
responses and advantages."""

import pytest
import torch

from sgopd_lite.study.channels import PLACES, borrow_digits, place, push_table


def test_borrow_digits_find_the_digit_that_decides_each_borrow():
    q = "23-7-8"                                       # 23-7 borrows (16); 16-8 borrows (8)
    right = borrow_digits(q, "23-7=16\n16-8=8\n\\boxed{8}")
    assert [(p["offset"], p["kind"]) for p in right] == [(5, "right"), (13, "right")]
    forgot = borrow_digits(q, "23-7=26\n26-8=28\n\\boxed{28}")
    assert [p["kind"] for p in forgot] == ["forgot", "forgot"]          # 26-8 is 18; forgotten: 28
    assert forgot[1]["earlier_wrong"] and not forgot[0]["earlier_wrong"]
    other = borrow_digits(q, "23-7=36\n36-8=28\n\\boxed{28}")
    assert [p["kind"] for p in other] == ["other", "right"]             # 28 is 36-8: right on its own line
    elsewhere = borrow_digits(q, "23-7=15\n15-8=7\n\\boxed{7}")
    assert (elsewhere[0]["kind"], place(elsewhere[0])) == ("right", "line wrong elsewhere")
    assert place(elsewhere[1]) == "after a wrong line"
    assert borrow_digits("23+7", "23+7=30\n\\boxed{30}") == []            # no borrow needed


def test_push_table_counts_pushes_toward_and_away_from_the_forgotten_borrow():
    right_ok = {"kind": "right", "line_right": True, "earlier_wrong": False}
    right_bad = {"kind": "right", "line_right": False, "earlier_wrong": False}
    forgot = {"kind": "forgot", "line_right": False, "earlier_wrong": False}
    adv = {"m": torch.tensor([[-2.0, 0.0], [1.0, 3.0]])}
    positions = [(0, 0, right_ok), (1, 0, right_bad), (1, 1, forgot)]
    row = push_table(adv, positions, rollouts=2)["m"]
    # toward: the right digit pushed down (2); away: the right digit up (1); toward: forgotten up (3)
    assert row["toward"] == (2 + 3) * 50 and row["away"] == 1 * 50
    assert row["toward_by_place"] == {PLACES[0]: 100.0, PLACES[1]: 0.0, PLACES[2]: 0.0}
    assert row["net_toward"] == 200.0


def test_line_kinds_sort_each_line_by_what_went_wrong_in_it():
    from sgopd_lite.study.error_kinds import line_kinds

    assert line_kinds("23-7+9", "23-7=16\n16+9=25\n\\boxed{25}") == ["right", "right"]
    assert line_kinds("23-7+9", "23-7=26\n26+9=25\n\\boxed{25}") == ["forgot borrow", "forgot carry"]
    assert line_kinds("24-3+2", "24-3=11\n11+2=23\n\\boxed{23}") == ["phantom borrow", "phantom carry"]
    assert line_kinds("24-3+2", "24-3=22\n21+2=23\n\\boxed{23}") == ["off by one", "wrong operands"]
    assert line_kinds("24-3+2", "24-3=25\n25+2=27\n\\boxed{27}") == ["other result", "right"]
    assert line_kinds("24-3+2", "24-3=21\n21+2=") == ["right"]                  # a cut-off line is not counted


def test_token_roles_name_the_decisive_digits_and_the_rest_of_each_result():
    from sgopd_lite.study.channels import ROLES, token_roles

    response = "23-7=16\n16+9=25\n\\boxed{25}"              # a borrow (the 1), a carry (the 2)
    roles = token_roles("23-7+9", response)
    assert roles == {5: ROLES[0], 6: ROLES[4], 13: ROLES[3], 14: ROLES[4]}
    assert token_roles("23-7+9", "23-7=26\n26+9=35\n\\boxed{35}")[5] == ROLES[1]    # the forgotten borrow


def test_the_local_oracle_knows_each_result_digit_its_own_operands_fix():
    from sgopd_lite.worlds.tiny import build_tokenizer, correct_next_tokens

    tok = build_tokenizer()
    response = "23-7=36\n36+5=41\n\\boxed{41}"                # the borrow digit wrong, then right on its own
    ids = tok(response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]     # as sampled: EOS last
    first = correct_next_tokens(tok, "23-7+5", ids)
    local = correct_next_tokens(tok, "23-7+5", ids, reach="local")
    known = lambda v: {t: tok.decode([x]) for t, x in enumerate(v) if x != -1}
    assert max(known(first)) == 5 and known(first)[5] == "1"           # up to the first mistake only
    assert {t: c for t, c in known(local).items() if t > 5} == {13: "4", 14: "1", 15: "\n"}
    with pytest.raises(ValueError, match="reach"):
        correct_next_tokens(tok, "23-7+5", ids, reach="everywhere")


def test_a_borrow_whose_right_answer_prefixes_the_forgotten_one_is_decided_at_the_newline():
    right = borrow_digits("20-19+5", "20-19=1\n1+5=6\n\\boxed{6}")           # 1 against the forgotten 11
    forgot = borrow_digits("20-19+5", "20-19=11\n11+5=16\n\\boxed{16}")
    assert [(p["offset"], p["kind"]) for p in right] == [(7, "right")]
    assert [(p["offset"], p["kind"]) for p in forgot] == [(7, "forgot")]
