import yaml
from tests.e2e import test_prometheus as m

def test_mutant(tmp_path, router, rules, monkeypatch):
    doc = yaml.safe_load(m.RULES.read_text(encoding="utf-8"))
    for g in doc["groups"]:
        for r in g["rules"]:
            if r.get("alert") == "HotlineUnitOverdueWork":
                r["expr"] = r["expr"].replace("by (jurisdiction, unit)", "by (jurisdiction)")
    p = tmp_path / "mut.rules.yml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    monkeypatch.setattr(m, "RULES", p)
    m.test_real_prometheus_scrapes_workers_and_fires_the_overdue_alert(tmp_path, router, rules)
