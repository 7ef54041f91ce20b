"""Colloquial vocabulary lock-in: short phrasings, invented for this file (not taken from any evaluation set), in
the way citizens actually speak to the 12345 hotline. Each must reach the given lead unit / outcome, so a rulebook
edit that loses the vocabulary fails here. Plus false friends: hazards and figures of speech that contain an
emergency word but are not an emergency in progress. See docs/routing.md, "Held-out evaluation"."""

from __future__ import annotations

import pytest

from schemas.intake import IntakeEvent
from services.domain.routing import Router


@pytest.fixture(scope="module")
def router() -> Router:
    return Router.load()


def route(router: Router, jurisdiction: str, content: str):
    return router.route(
        IntakeEvent(
            event_id="vocab-1",
            source="hotline_12345",
            jurisdiction=jurisdiction,
            occurred_at="2025-03-03T09:00:00+08:00",
            content=content,
            address="地址不详",
        )
    )


# (jurisdiction, content, expected lead unit)
DISPATCH = [
    # qingpu
    ("qingpu", "楼上装修电钻响个不停，周末一大早就开始", "区房管局"),
    ("qingpu", "小区门口有人推着小车卖煎饼，把人行道都占了", "区绿化市容局"),  # 任务分解表 第11项: 乱设摊 → 绿化市容局
    ("qingpu", "路边那棵树歪了，快压到电线了", "区绿化市容局"),
    ("qingpu", "一楼那户把走廊封起来当自己家用了", "区城管执法局"),
    ("qingpu", "邻居在屋顶上又加了一层，用彩钢瓦盖的", "区城管执法局"),
    ("qingpu", "楼道里堆满纸箱和旧家具，物业也不管", "区房管局"),
    ("qingpu", "工地半夜还在浇混凝土，机器声吵得整栋楼睡不着", "区城管执法局"),
    ("qingpu", "马路上井盖松动了，车一压就哐当响", "区建管委"),
    ("qingpu", "泥头车一路撒土，路上全是泥", "区绿化市容局"),  # 任务分解表 第5项: 运输中产生的市容问题 → 绿化市容局
    ("qingpu", "电瓶车停在楼道里充电，还私拉电线", "区应急局"),
    ("qingpu", "巡查发现某小区3号楼外墙保温层脱落约2平方米", "区房管局"),
    # chongming
    ("chongming", "楼上装修一天到晚电锤声，中午都不停", "区住房保障房屋管理局"),
    ("chongming", "工地通宵施工，挖掘机一直响", "区城管执法局"),
    ("chongming", "村民在河边圈了个院子，还搭了铁皮棚", "区城管执法局"),
    ("chongming", "镇上菜场门口好多卖菜的在路边卖", "区城管执法局"),
    ("chongming", "拉土车撒了一路，车轮带泥上路", "区绿化市容局"),
    ("chongming", "田边有人倒了好多水泥块和碎砖烂瓦", "区绿化市容局"),
    ("chongming", "路边大树被大风刮断了，横在马路上", "区绿化市容局"),
    ("chongming", "私家车双排停车，把路都堵了", "区公安分局"),
    ("chongming", "家里墙开裂，房子好像有点倾斜", "区住房保障房屋管理局"),
    ("chongming", "有人在烧垃圾，浓烟滚滚，呛得不行", "区生态环境局"),
    # changning
    ("changning", "楼下邻居装修，冲击钻从早上八点钻到晚上", "区房管局"),
    ("changning", "工地晚上十一点还在施工，吵得睡不着", "区城管执法局"),
    ("changning", "人行道上一排水果摊，走路都走不过去", "区城管执法局"),
    ("changning", "顶楼住户在露台上搭了个玻璃房", "区城管执法局"),
    ("changning", "楼道堆满杂物，纸箱子都堆到楼梯上了", "区房管局"),
    ("changning", "墙上裂了好大一条缝，担心房子出问题", "区房管局"),
    ("changning", "楼上往下倒水，晾的衣服全湿了", "区房管局"),
    ("changning", "私家车停在人行道上，行人只能走马路", "公安长宁分局"),
    ("changning", "商场大屏广告亮到凌晨，照得家里睡不着", "区绿化市容局"),
    ("changning", "雨水井盖被偷了", "区建管委"),
    # zhalantun
    ("zhalantun", "楼上装修敲敲打打，晚上八九点还在干", "住建局"),
    ("zhalantun", "街上好多流动摊贩，推车卖烤红薯的占了人行道", "城管执法局"),
    ("zhalantun", "邻居在院子里盖了间房，没有任何手续", "自然资源局"),
    ("zhalantun", "小区楼道堆满了杂物，物业不清理", "住建局"),
    ("zhalantun", "暖气不热，屋里才十几度", "住建局"),
    ("zhalantun", "路口信号灯坏了", "公安局"),
    ("zhalantun", "大货车停在路边好几天了", "公安局"),
    ("zhalantun", "出租车在路口乱停，占了半条路", "城管执法局"),
    ("zhalantun", "饭店门口桌椅摆到人行道上了", "城管执法局"),
    ("zhalantun", "锅炉房烟囱冒黑烟，一股煤烟味", "生态环境分局"),
]

# (jurisdiction, content, redirect number)
EMERGENCIES = [
    ("qingpu", "窗户往外冒火，里面有人在喊救命", "119"),
    ("qingpu", "工人从脚手架上摔下来了，腿都断了", "120"),
    ("qingpu", "有人拿着刀在街上追人", "110"),
    ("chongming", "村里有户人家房子冒大烟，火苗窜出来了", "119"),
    ("chongming", "老人摔倒在地起不来了", "120"),
    ("changning", "楼里着火了，楼道里全是烟", "119"),
    ("changning", "有人晕倒在地铁站口，没有呼吸了", "120"),
    ("changning", "有人在小区里撬门偷东西", "110"),
    ("zhalantun", "平房着起来了，火很大", "119"),
    ("zhalantun", "有人喝了农药，快不行了", "120"),
    ("zhalantun", "有人在街上抢包，往北跑了", "110"),
]

# questions about matters outside city management, some containing a city-management word
OUT_OF_SCOPE = [
    ("qingpu", "居住证怎么办理，要带什么材料"),
    ("qingpu", "我的居住证到期了怎么续签"),
    ("chongming", "合作医疗在哪里交，交多少钱"),
    ("chongming", "低保怎么申请"),
    ("changning", "居住证积分怎么算"),
    ("changning", "社保卡丢了怎么补办"),
    ("zhalantun", "身份证丢了在哪里补办"),
    ("zhalantun", "灵活就业的养老保险怎么交"),
]

# (jurisdiction, content, expected lead unit): hazards, past events and figures of speech are not emergencies
FALSE_FRIENDS = [
    ("qingpu", "小区消防通道经常被占，万一着火消防车进不来", "区消防救援支队"),
    ("qingpu", "电动车在楼道充电有火灾隐患", "区应急局"),
    ("qingpu", "担心电动车充电着火，楼道里天天有人充", "区应急局"),
    ("qingpu", "燃气灶火苗很小，是不是气压不够", "区建管委"),
    ("qingpu", "楼道里堆了很多杂物，有火灾隐患", "区房管局"),
    ("changning", "消防通道被共享单车堵住了", "区消防救援支队"),
    ("changning", "楼道里有人飞线充电，有火灾隐患", "区房管局"),
    ("chongming", "公园的长椅腿断了，没人修", "区绿化市容局"),
    ("zhalantun", "公园的长椅腿断了", "城管执法局"),
]


@pytest.mark.parametrize(("jurisdiction", "content", "lead"), DISPATCH, ids=[c for _, c, _ in DISPATCH])
def test_colloquial_phrasing_dispatches(router: Router, jurisdiction: str, content: str, lead: str) -> None:
    d = route(router, jurisdiction, content)
    assert d.outcome == "dispatch" and d.lead_unit == lead, (d.outcome, d.lead_unit, d.rule_id, d.matched_terms)


@pytest.mark.parametrize(("jurisdiction", "content", "number"), EMERGENCIES, ids=[c for _, c, _ in EMERGENCIES])
def test_emergency_in_progress_redirects(router: Router, jurisdiction: str, content: str, number: str) -> None:
    d = route(router, jurisdiction, content)
    assert d.outcome == "redirect" and d.redirect_to == number, (d.outcome, d.redirect_to, d.matched_terms)


@pytest.mark.parametrize(("jurisdiction", "content"), OUT_OF_SCOPE, ids=[c for _, c in OUT_OF_SCOPE])
def test_out_of_scope_question_triages(router: Router, jurisdiction: str, content: str) -> None:
    d = route(router, jurisdiction, content)
    assert d.outcome == "triage" and (d.triage_reason or "").startswith("out_of_scope:"), (d.outcome, d.triage_reason)


@pytest.mark.parametrize(("jurisdiction", "content", "lead"), FALSE_FRIENDS, ids=[c for _, c, _ in FALSE_FRIENDS])
def test_false_friends_are_not_emergencies(router: Router, jurisdiction: str, content: str, lead: str) -> None:
    d = route(router, jurisdiction, content)
    assert d.outcome != "redirect", (d.redirect_to, d.matched_terms)
    assert d.outcome == "dispatch" and d.lead_unit == lead, (d.outcome, d.lead_unit, d.rule_id, d.matched_terms)


def test_fire_hazard_words_never_redirect_to_119(router: Router) -> None:
    for content in ("这里有火灾隐患", "消防通道被堵", "楼里以前着过火", "怕着火", "飞线充电容易起火"):
        d = route(router, "qingpu", content)
        assert not (d.outcome == "redirect" and d.redirect_to == "119"), (content, d.matched_terms)
