import csv

import pytest

from clinrl.drg.ontology import CCMCC, load_ontology, normalize_description


def test_sizes(onto):
    assert len(onto) == 757
    assert len(onto.principals) == 340
    families = onto.mdc_families()
    assert list(families)[0] == "PRE" and list(families)[-1] == "99"
    assert len(families) == 27  # 25 MDCs + pre-MDC + no MDC
    assert sum(len(v) for v in families.values()) == 757


def test_vendored_tables_equal_shared(onto, msdrg_dir):
    shared = load_ontology(msdrg_dir)
    assert shared.drgs == onto.drgs


def test_lookups(onto):
    hf = onto.by_code(291)
    assert hf.description == "HEART FAILURE AND SHOCK WITH MCC"
    assert hf.mdc == "05" and hf.type == "MED" and hf.cc_mcc is CCMCC.WITH_MCC
    assert hf.principal == "HEART FAILURE AND SHOCK" and hf.weight and hf.weight > 1
    assert onto.by_code("DRG 291") is hf
    assert onto.find("  heart failure and   shock with mcc ") is hf
    assert onto.find("HEART FAILURE AND SHOCK") is None
    assert onto.by_code(999).weight is None
    with pytest.raises(KeyError, match="not in MS-DRG v34"):
        onto.by_code(1000)
    # the CMS typo is the vocabulary
    assert any("GASTROENTERISTIS" in d.description for d in onto)
    # descriptions with a double space match their collapsed spelling
    assert onto.find("MISCELLANEOUS DISORDERS OF NUTRITION METABOLISM FLUIDS AND ELECTROLYTES WITH MCC")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("HEART FAILURE & SHOCK W MCC", "HEART FAILURE AND SHOCK WITH MCC"),
        ("SIMPLE PNEUMONIA & PLEURISY W/O CC/MCC", "SIMPLE PNEUMONIA AND PLEURISY WITHOUT CC/MCC"),
        ("abortion w d&c, aspiration curettage", "ABORTION WITH DANDC ASPIRATION CURETTAGE"),
        ("CARD CATH", "CARD CATHETERIZATION"),
        ("CATHETERIZATION PROC", "CATHETERIZATION PROCEDURES"),
        ("W/O  W  X", "WITHOUT WITH X"),
    ],
)
def test_normalize(raw, expected):
    assert normalize_description(raw) == expected


def test_mapping_table_fully_resolves(onto, msdrg_dir):
    rows = list(csv.DictReader(open(msdrg_dir / "DRG34_Mapping.csv")))
    hows = [onto.to_v34(r["raw_description"]) for r in rows]
    unmappable = [h for h in hows if h.how == "unmappable"]
    assert len(unmappable) == 20  # REFERENCE A: 20 raw descriptions have no v34 equivalent
    for row, result in zip(rows, hows):
        if row["DRG_34_description"] != "NaN":
            assert result.drg is not None and result.drg.description == row["DRG_34_description"]


def test_to_v34_kinds(onto):
    assert onto.to_v34("HEART FAILURE & SHOCK W MCC").how == "exact"
    mapped = onto.to_v34("SEPTICEMIA OR SEVERE SEPSIS W/O MV 96+ HOURS W MCC")
    assert mapped.how == "mapped" and mapped.drg.code == 871
    assert onto.to_v34("NOT A DRG AT ALL").how == "unknown"
    # a comma read as a space also resolves
    recovered = onto.to_v34("MISCELLANEOUS DISORDERS OF NUTRITION, METABOLISM, FLUIDS & ELECTROLYTES W MCC")
    assert recovered.how == "exact" and recovered.drg.code == 640


def test_knowledge_rows(onto):
    from clinrl.drg.train.knowledge import knowledge_rows

    rows = knowledge_rows(onto)
    assert len(rows) == 28  # REFERENCE A: the full list + one per MDC family
    full = rows[0]["completion"][0]["content"].split("\n")
    assert full == [d.description for d in onto]
    families = [r["completion"][0]["content"].split("\n") for r in rows[1:]]
    assert sorted(sum(families, [])) == sorted(full)
    assert "Circulatory" in rows[6]["prompt"][0]["content"] and "HEART FAILURE AND SHOCK WITH MCC" in families[5]
