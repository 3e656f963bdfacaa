"""A small two-platform world (a shop and a video app) used by the integration tests."""

from __future__ import annotations

from fusionrec.contracts import BehaviorEvent, IdentityLink, ItemUpsert

PLATFORMS = ("shop", "video")

_SHOP = {
    "s-run-shoes": ("Trail running shoes", "Lightweight shoes for marathon and trail running", ["sports", "running"]),
    "s-run-socks": ("Running socks", "Breathable socks for long distance runners", ["sports", "running"]),
    "s-run-watch": ("GPS running watch", "Tracks pace, distance and heart rate on your runs", ["sports", "running"]),
    "s-yoga-mat": ("Yoga mat", "Non-slip mat for yoga and pilates", ["sports", "yoga"]),
    "s-skillet": ("Cast iron skillet", "Pan for searing steak and baking cornbread", ["kitchen"]),
    "s-knife": ("Chef knife", "Sharp knife for chopping vegetables and meat", ["kitchen"]),
    "s-pasta-maker": ("Pasta maker", "Roll and cut fresh Italian pasta at home", ["kitchen", "italian"]),
    "s-espresso": ("Espresso machine", "Brew espresso and cappuccino coffee", ["kitchen", "coffee"]),
    "s-scifi-novel": ("Space opera novel", "Science fiction saga of starships and galactic empires", ["books", "sci-fi"]),
    "s-fantasy-novel": ("Dragon fantasy novel", "Epic fantasy with dragons, wizards and quests", ["books", "fantasy"]),
    "s-mouse": ("Gaming mouse", "High precision mouse for competitive video games", ["gaming"]),
    "s-keyboard": ("Mechanical keyboard", "Tactile keyboard for gamers and typists", ["gaming"]),
}
_VIDEO = {
    "v-marathon-doc": ("Marathon documentary", "Runners train for the Boston marathon", ["sports", "running"]),
    "v-ultra-run": ("Ultra trail race film", "Trail runners race 100 miles through mountains", ["sports", "running"]),
    "v-yoga-class": ("Yoga for beginners", "A gentle yoga class at home", ["sports", "yoga"]),
    "v-pasta-show": ("Italian cooking show", "Chef makes fresh pasta and sauces", ["cooking", "italian"]),
    "v-bbq-show": ("Barbecue masters", "Grilling steak and smoking brisket", ["cooking"]),
    "v-coffee-doc": ("Coffee documentary", "From coffee beans to espresso", ["cooking", "coffee"]),
    "v-space-movie": ("Starship odyssey", "Science fiction film about a journey across the galaxy", ["sci-fi"]),
    "v-alien-series": ("Alien contact series", "Science fiction series about first contact", ["sci-fi"]),
    "v-dragon-epic": ("Dragon kingdom", "Fantasy epic of dragons and knights", ["fantasy"]),
    "v-esports": ("Esports finals", "Professional gamers compete in a video game tournament", ["gaming"]),
    "v-speedrun": ("Speedrun marathon", "Gamers race through video games", ["gaming"]),
    "v-news": ("Evening news", "Daily news bulletin", ["news"]),
}


def items() -> list[ItemUpsert]:
    out = []
    for platform, table in (("shop", _SHOP), ("video", _VIDEO)):
        for item_id, (title, text, cats) in table.items():
            out.append(ItemUpsert(item_id=item_id, platform=platform, title=title, text=text, categories=tuple(cats)))
    return out


def links() -> list[IdentityLink]:
    """alice is u-alice on the shop and watcher-7 on the video app; bob is linked on the shop only."""
    return [
        IdentityLink(platform="shop", user_id="u-alice", person_id="alice"),
        IdentityLink(platform="video", user_id="watcher-7", person_id="alice"),
        IdentityLink(platform="shop", user_id="u-bob", person_id="bob"),
    ]


def events(t0: float) -> list[BehaviorEvent]:
    """Events of several people across both platforms, in time order."""

    def ev(n: int, platform: str, user: str, item: str, kind: str = "click", **kw: object) -> BehaviorEvent:
        return BehaviorEvent(
            event_id=f"e{n}", ts=t0 + n, platform=platform, user_id=user, item_id=item, event_type=kind, **kw  # type: ignore[arg-type]
        )

    return [
        ev(1, "shop", "u-alice", "s-run-shoes", "purchase"),
        ev(2, "shop", "u-bob", "s-skillet", "view"),
        ev(3, "video", "watcher-7", "v-marathon-doc"),  # alice on the video app: her shop history counts
        ev(4, "shop", "u-alice", "s-run-socks", "click"),
        ev(5, "video", "v-carol", "v-space-movie", "like", person_id="carol"),
        ev(6, "shop", "u-bob", "s-pasta-maker", "purchase"),
        ev(7, "video", "watcher-7", "v-yoga-class", "click"),
        ev(8, "video", "anon-9", "v-esports", "view"),  # unlinked: person "video:anon-9"
        ev(9, "video", "v-carol", "v-alien-series", "rating", value=5.0, person_id="carol"),
        ev(10, "shop", "u-alice", "s-yoga-mat", "like"),
    ]
